import Foundation

/// An exclusive lock that one run holds on its output or checkpoint folder (`flock` on a hidden
/// lock file beside it). A second run is refused with the holder's process id and host; the
/// kernel releases the lock when the holder exits, however it exits, so a crashed or killed run
/// never leaves it stuck.
public final class RunLock {
  public let path: String
  private var fd: Int32

  private init(path: String, fd: Int32) {
    self.path = path
    self.fd = fd
  }

  /// The lock file guarding `target`: `.<name>.lock` in the same folder (`derivedPath`: a
  /// shortened name when the target's is near the 255-byte limit).
  public static func lockPath(for target: String) -> String {
    derivedPath(of: target, suffix: ".lock")
  }

  /// Takes the lock guarding `target` (`what` names it in the message) or throws at once.
  public static func acquire(_ target: String, what: String) throws -> RunLock {
    let path = lockPath(for: target)
    for _ in 0..<8 {
      let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
      guard fd >= 0 else { throw StorageError(target, "cannot create the lock file \(path): \(String(cString: strerror(errno)))") }
      if flock(fd, LOCK_EX | LOCK_NB) != 0 {
        let busy = errno == EWOULDBLOCK
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = pread(fd, &buffer, buffer.count, 0)
        close(fd)
        guard busy else { throw StorageError(target, "cannot lock \(path): \(String(cString: strerror(errno)))") }
        let holder = String(decoding: buffer.prefix(max(0, count)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        throw StorageError(target, "\(what) is in use by another ntkgram run (\(holder.isEmpty ? "process unknown" : holder)); wait for it to finish or stop it")
      }
      // The holder before us may have unlinked the file after we opened it: then retry on the new one.
      var mine = stat(), current = stat()
      guard fstat(fd, &mine) == 0, stat(path, &current) == 0, mine.st_ino == current.st_ino, mine.st_dev == current.st_dev else {
        close(fd)
        continue
      }
      var host = [CChar](repeating: 0, count: 256)
      gethostname(&host, host.count - 1)
      let text = "process \(getpid()) on \(String(cString: host))\n"
      _ = ftruncate(fd, 0)
      _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
      return RunLock(path: path, fd: fd)
    }
    throw StorageError(target, "cannot lock \(path): it keeps being replaced")
  }

  /// Removes the lock file and releases the lock (idempotent; also on deinit).
  public func release() {
    guard fd >= 0 else { return }
    unlink(path)
    close(fd)
    fd = -1
  }

  deinit { release() }
}
