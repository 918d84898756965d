import Foundation

// Every file a command writes — its output, metrics, event log, pictures, checkpoints — passes
// one set of checks before any work (`CommandPaths.check`), and is written by one of two
// disciplines: beside its path and renamed over it (`writeOutputFile`, `KernelFileWriter`), or,
// for a character device or a FIFO, in place (`OutputWriter`). docs/reliability.md, "Output
// paths", states the promises.

/// The file system's limit on one name (Linux: 255 bytes).
public let nameLimit = 255
/// The file system's limit on a whole path (Linux: 4,095 bytes and the terminating zero).
public let pathLimit = 4095

/// How an output reaches its path.
public enum OutputKind: Sendable, Equatable {
  /// Made beside its path and renamed over it once complete (HDF5 files, pictures): an existing
  /// path must be a regular file.
  case file
  /// Text (metrics, event logs): a regular file is replaced (whole, or truncated for a log)
  /// like `.file`; an existing character device or FIFO is written in place, without `--force`
  /// (nothing is replaced).
  case text
  /// A folder the command owns (the build's checkpoint folder): may exist, must be a folder.
  case folder
}

/// One output of a command.
public struct PlannedOutput: Sendable {
  public var path: String
  /// What it is, for messages: "the solution file", "the metrics (--metrics)".
  public var what: String
  public var kind: OutputKind
  /// An existing regular file is this command's own (a solve checkpoint, a kernel file to
  /// `--repair`): it may exist without `--force`.
  public var mayExist: Bool
  /// What the message for an existing file without `--force` suggests.
  public var remedy: String?

  public init(_ path: String, _ what: String, kind: OutputKind = .file, mayExist: Bool = false, remedy: String? = nil) {
    self.path = path
    self.what = what
    self.kind = kind
    self.mayExist = mayExist
    self.remedy = remedy
  }
}

/// The files a command reads and writes, checked together before any work.
public struct CommandPaths: Sendable {
  /// Each input with what it is ("the kernel file").
  public var inputs: [(String, String)]
  public var outputs: [PlannedOutput]
  /// `--force`: existing regular files may be replaced.
  public var force: Bool
  /// A rerun of an interrupted command (its checkpoint exists): its event log, if it exists,
  /// is continued (appended to) rather than refused or replaced.
  public var resuming = false

  public init(inputs: [(String, String)] = [], outputs: [PlannedOutput] = [], force: Bool = false) {
    self.inputs = inputs
    self.outputs = outputs
    self.force = force
  }

  /// Throws, naming the path, when an output is empty, too long, a folder (or a folder output a
  /// file), a device or FIFO the command would rename over, one of the command's inputs,
  /// another of its outputs, or an existing file without `force`.
  public func check() throws {
    for o in outputs { try Self.checkName(o) }
    for o in outputs {
      for (input, role) in inputs where samePath(o.path, input) {
        throw StorageError(o.path, "is also \(role) of this command; refusing to replace it (choose another path for \(o.what))")
      }
    }
    for (i, a) in outputs.enumerated() {
      for b in outputs[(i + 1)...] where samePath(a.path, b.path) && !(Self.inPlace(a) && Self.inPlace(b)) {
        throw StorageError(a.path, "is both \(a.what) and \(b.what) of this command (give them two paths)")
      }
    }
    for o in outputs { try checkExisting(o) }
  }

  private static func checkName(_ o: PlannedOutput) throws {
    guard !o.path.isEmpty else { throw StorageError("''", "the path of \(o.what) is empty") }
    guard o.path.utf8.count <= pathLimit else {
      throw StorageError(String(o.path.prefix(60)) + "…", "the path of \(o.what) is longer than the file system's \(pathLimit) bytes")
    }
    let name = URL(fileURLWithPath: o.path).lastPathComponent
    guard name.utf8.count <= nameLimit else {
      throw StorageError(o.path, "the name of \(o.what) is \(name.utf8.count) bytes, longer than the file system's \(nameLimit)")
    }
    if o.kind != .folder && (o.path.hasSuffix("/") || name == "." || name == "..") {
      throw StorageError(o.path, "names a folder, not a file (\(o.what) needs a file name)")
    }
  }

  /// Whether `o` exists and would be written in place (a character device or FIFO as text).
  private static func inPlace(_ o: PlannedOutput) -> Bool {
    o.kind == .text && [FileType.characterDevice, .fifo].contains(FileType.of(o.path))
  }

  private func checkExisting(_ o: PlannedOutput) throws {
    let type = FileType.of(o.path)
    switch (type, o.kind) {
    case (.missing, _):
      return
    case (.folder, .folder):
      return
    case (.folder, _):
      throw StorageError(o.path, "is a folder (\(o.what) needs a file path)")
    case (_, .folder):
      throw StorageError(o.path, "exists and is not a folder (\(o.what) must be a folder)")
    case (.regular, _):
      if !force && !o.mayExist { throw StorageError(o.path, "already exists (\(o.remedy ?? "use --force to replace \(o.what)"))") }
    case (.characterDevice, .text), (.fifo, .text):
      return
    default:
      throw StorageError(o.path, "is \(type.description), not a regular file: \(o.what) is written beside its path and renamed over it, so it must be a regular file or absent (choose another path)")
    }
  }
}

/// What a path names (symbolic links followed).
public enum FileType: Sendable, Equatable, CustomStringConvertible {
  case missing, regular, folder, characterDevice, blockDevice, fifo, socket, other

  public static func of(_ path: String) -> FileType {
    var s = stat()
    guard stat(path, &s) == 0 else { return .missing }
    switch s.st_mode & S_IFMT {
    case S_IFREG: return .regular
    case S_IFDIR: return .folder
    case S_IFCHR: return .characterDevice
    case S_IFBLK: return .blockDevice
    case S_IFIFO: return .fifo
    case S_IFSOCK: return .socket
    default: return .other
    }
  }

  public var description: String {
    switch self {
    case .missing: "missing"
    case .regular: "a regular file"
    case .folder: "a folder"
    case .characterDevice: "a character device"
    case .blockDevice: "a block device"
    case .fifo: "a FIFO"
    case .socket: "a socket"
    case .other: "not a regular file"
    }
  }
}

// MARK: Names derived from an output's name

/// The path of a file derived from `target` in its folder: `prefix + name + suffix`. When that
/// name, with `reserve` more bytes (a process id appended later), would pass the file system's
/// 255 bytes, the target's name is cut at a character boundary and 16 hex digits of its
/// checksum appended, so a legal output name always has legal lock, partial and checkpoint
/// names, and two long names sharing a prefix keep distinct ones. Names that fit are unchanged.
public func derivedPath(of target: String, prefix: String = ".", suffix: String, reserve: Int = 0) -> String {
  var target = Substring(target)
  while target.count > 1 && target.hasSuffix("/") { target = target.dropLast() }
  let cut = target.lastIndex(of: "/").map { target.index(after: $0) } ?? target.startIndex
  return String(target[..<cut]) + derivedName(String(target[cut...]), prefix: prefix, suffix: suffix, reserve: reserve)
}

/// The hidden file beside `destination` that a process writes before renaming it over
/// `destination`: `.<name>.partial-<pid>` (`KernelFileWriter`, `writeOutputFile`).
public func partialPath(of destination: String, pid: Int32 = getpid()) -> String {
  derivedPath(of: destination, suffix: ".partial-", reserve: 10) + "\(pid)"
}

/// `derivedPath`'s name alone.
public func derivedName(_ name: String, prefix: String = ".", suffix: String, reserve: Int = 0) -> String {
  let fixed = prefix.utf8.count + suffix.utf8.count + reserve
  guard fixed + name.utf8.count > nameLimit else { return prefix + name + suffix }
  let tag = "~" + hex(Array(name.utf8).withUnsafeBytes { checksum64($0) })
  var kept = ""
  for c in name {
    guard fixed + kept.utf8.count + String(c).utf8.count + tag.utf8.count <= nameLimit else { break }
    kept.append(c)
  }
  return prefix + kept + tag + suffix
}

// MARK: Writing

/// A command's output opened for writing: a new or existing regular file, truncated (only after
/// `CommandPaths.check` allowed it), or a character device or FIFO written in place. Write
/// failures (a full disk) are returned, never trapped on.
public final class OutputWriter: @unchecked Sendable {
  public let path: String
  private var fd: Int32

  /// Opens `path` (a regular file: appended to with `append`, else truncated). A FIFO without
  /// a reader is refused at once instead of blocking.
  public init(path: String, what: String, append: Bool = false) throws {
    self.path = path
    switch FileType.of(path) {
    case .characterDevice:
      fd = open(path, O_WRONLY | O_CLOEXEC)
    case .fifo:
      fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
      if fd < 0 && errno == ENXIO { throw StorageError(path, "is a FIFO with no reader: start its reader first (\(what))") }
      if fd >= 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) }
    case .missing, .regular:
      fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0o644)
    case let type:
      throw StorageError(path, "is \(type.description): cannot write \(what) there")
    }
    guard fd >= 0 else { throw StorageError(path, "cannot open \(what) for writing: \(String(cString: strerror(errno)))") }
  }

  deinit { close() }

  /// Writes every byte, or returns why not (the stream stays usable for nothing but `close`).
  @discardableResult
  public func write(_ bytes: [UInt8]) -> String? {
    guard fd >= 0 else { return "closed" }
    return bytes.withUnsafeBytes { writeAll(fd, $0) }
  }

  public func close() {
    if fd >= 0 { _ = Glibc.close(fd) }
    fd = -1
  }
}

/// The file a symbolic link names (its links resolved), else `path` itself: an output that is a
/// link is replaced at its target, so the link stays (`/dev/stdout` to a file is not renamed over).
public func linkTarget(_ path: String) -> String {
  var s = stat()
  guard lstat(path, &s) == 0, s.st_mode & S_IFMT == S_IFLNK, let resolved = realpath(path, nil) else { return path }
  defer { free(resolved) }
  return String(cString: resolved)
}

/// Writes every byte of `buffer` to `fd` (retrying short writes and EINTR); nil, or the reason.
func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> String? {
  var done = 0
  while done < buffer.count {
    let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
    if n < 0 && errno == EINTR { continue }
    guard n > 0 else { return n < 0 ? String(cString: strerror(errno)) : "nothing written" }
    done += n
  }
  return nil
}

/// Writes a whole output: a character device or FIFO in place; otherwise a hidden file beside
/// `path` (a link's target), synced and renamed over it, so an existing file is replaced whole or not at all (a
/// full disk leaves it as it was, and no temporary file behind).
public func writeOutputFile(_ bytes: [UInt8], to given: String, what: String) throws {
  let path = linkTarget(given)
  if [FileType.characterDevice, .fifo].contains(FileType.of(path)) {
    let stream = try OutputWriter(path: path, what: what)
    defer { stream.close() }
    if let problem = stream.write(bytes) { throw StorageError(path, "cannot write \(what): \(problem)") }
    return
  }
  let temporary = partialPath(of: path)
  let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
  guard fd >= 0 else { throw StorageError(path, "cannot write \(what): \(String(cString: strerror(errno)))") }
  var problem = bytes.withUnsafeBytes { writeAll(fd, $0) }
  if problem == nil && fsync(fd) != 0 { problem = String(cString: strerror(errno)) }
  _ = Glibc.close(fd)
  if problem == nil && rename(temporary, path) != 0 { problem = String(cString: strerror(errno)) }
  if let problem {
    unlink(temporary)
    throw StorageError(path, "cannot write \(what): \(problem)")
  }
}
