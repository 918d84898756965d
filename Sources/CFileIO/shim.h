// Thin shim over Linux file calls that glibc declares only under _GNU_SOURCE (the Swift Glibc
// module does not see them): early write-back of a byte range, space reservation without
// glibc's write-every-block fallback, an open-file-description lock, the filesystem's type,
// direct (uncached) writes.
#ifndef NTKGRAM_CFILEIO_SHIM_H
#define NTKGRAM_CFILEIO_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sys/vfs.h>

/// Starts write-back of the dirty pages in [offset, offset + length) without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`); 0 or -1 with errno.
static inline int cfio_start_writeback(int fd, long long offset, long long length) {
  return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

/// Allocates [0, length) of the file (`fallocate`, mode 0); 0 or -1 with errno (EOPNOTSUPP
/// where the filesystem cannot).
static inline int cfio_reserve(int fd, long long length) {
  return fallocate(fd, 0, 0, length);
}
/// Takes (`lock` 1, waiting) or releases (0) an open-file-description write lock on the file's
/// first byte (`F_OFD_SETLKW`): independent of `flock` locks (HDF5's own), held per open of
/// the file, so processes that opened it separately take turns. 0 or -1 with errno.
static inline int cfio_turn(int fd, int lock) {
  struct flock f = {0};
  f.l_type = lock ? F_WRLCK : F_UNLCK;
  f.l_whence = SEEK_SET;
  f.l_start = 0;
  f.l_len = 1;
  int r;
  do { r = fcntl(fd, F_OFD_SETLKW, &f); } while (r == -1 && errno == EINTR);
  return r;
}

/// 1 when the file lives on a disk of this host (ext2/3/4, XFS, Btrfs, F2FS, ZFS, tmpfs,
/// overlayfs), so every process writing it runs here; 0 for anything else (network and
/// cluster filesystems, FUSE) or when it cannot be told.
static inline int cfio_is_local(int fd) {
  struct statfs s;
  if (fstatfs(fd, &s) != 0) return 0;
  switch ((unsigned long)s.f_type) {
  case 0xEF53UL: case 0x58465342UL: case 0x9123683EUL: case 0xF2F52010UL: case 0x2FC12FC1UL:
  case 0x01021994UL: case 0x794C7630UL:
    return 1;
  default:
    return 0;
  }
}

/// Asks for [offset, offset + length) to be brought into the page cache now
/// (`posix_fadvise(POSIX_FADV_WILLNEED)`); 0 or an error number.
static inline int cfio_will_need(int fd, long long offset, long long length) {
  return posix_fadvise(fd, offset, length, POSIX_FADV_WILLNEED);
}

/// Opens `path` for writing without the page cache (`O_RDWR | O_DIRECT`): writes go from the
/// caller's buffer to the disk. Offsets, lengths and buffer addresses must then be aligned
/// (`RegionFile.directAlignment`). A descriptor, or -1 with errno (EINVAL where the filesystem has
/// no direct I/O: tmpfs, some FUSE).
static inline int cfio_open_direct(const char *path) {
  return open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
}

#endif
