// Thin shim over Linux file calls that glibc declares only under _GNU_SOURCE (the Swift Glibc
// module does not see them): early write-back of a byte range, and space reservation without
// glibc's write-every-block fallback.
#ifndef NTKGRAM_CFILEIO_SHIM_H
#define NTKGRAM_CFILEIO_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>

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
#endif
