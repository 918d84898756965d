import Foundation

/// The version written into every kernel and solution file.
public let toolVersion = "0.2.0"

/// Dataset names of the kernel file (see docs/DESIGN.md, "Kernel file").
public enum KernelFileLayout {
  public static func train(_ kernel: String) -> String { "/train/\(kernel)" }
  public static func test(_ kernel: String) -> String { "/test/\(kernel)" }
  public static let trainLabels = "/train/labels"
  public static let testLabels = "/test/labels"
  public static let kernelNames = ["ntk", "nngp"]
  /// The training set's `standardize` statistics, per feature (float64).
  public static let preprocessMean = "/preprocess/mean"
  public static let preprocessStd = "/preprocess/std"
  /// The training set's `zca` whitening matrix, features × features (float64), beside its mean.
  public static let preprocessZCA = "/preprocess/zca"
  /// `tiles × kernels × 2` checksums of every tile's stored bytes (upper tile, row-major), as
  /// two unsigned 32-bit words, high then low (format 1: `tiles × kernels` uint64).
  public static let tileChecksums = "/tiles/checksums"
  public static let checksumAlgorithm = "checksum64 (FNV-1a over little-endian 8-byte words, final mix) of the upper tile's stored bytes, row-major; tiles in TilePlan order"
  /// 2: contiguous kernels, checksums as 32-bit word pairs, variable-length UTF-8 strings, axes
  /// (and, since tiled files, a `layout` attribute saying `contiguous`: a format-2 reader reads
  /// them as before). 3: as 2 with the kernels in chunks of one tile, side by side (HDF5 1.10
  /// format, implicit chunk index; `layout` = `tiles`): kernels of 256 MiB or more by default.
  public static func formatVersion(tiled: Bool) -> Int { tiled ? 3 : 2 }
}

extension H5Dataset {
  /// Writes integer labels (the whole dataset) and names its axis.
  public func write(labels: [Int64], axes: String) throws {
    try labels.withUnsafeBufferPointer { try write($0, start: [0], count: [labels.count]) }
    try setAttribute("axes", .string(axes))
  }
}

/// Writes a kernel file atomically: everything goes to a hidden temporary file beside the
/// destination, which replaces the destination only in `commit()` (fsync, then rename). A run
/// that fails or is killed never leaves a partial file under the destination's name and never
/// touches an existing one.
public final class KernelFileWriter {
  public let destination: String
  public let temporaryPath: String
  private var file: H5File?
  private var datasets: [String: H5Dataset] = [:]

  /// Fails when `destination` exists and `overwrite` is false, or its folder is missing.
  public init(destination given: String, overwrite: Bool) throws {
    let destination = linkTarget(given)
    self.destination = destination
    let url = URL(fileURLWithPath: destination)
    let folder = url.deletingLastPathComponent().path
    switch FileType.of(destination) {
    case .missing: break
    case .regular: if !overwrite { throw StorageError(destination, "already exists (use --force to replace it)") }
    case .folder: throw StorageError(destination, "is a directory")
    case let type:
      throw StorageError(destination, "is \(type.description), not a regular file: the output is written beside it and renamed over it, so it must be a regular file or absent (choose another path)")
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw StorageError(destination, "output folder \(folder) does not exist")
    }
    temporaryPath = partialPath(of: destination)
    try? FileManager.default.removeItem(atPath: temporaryPath)
    file = try H5File.create(temporaryPath)
  }

  deinit { discard() }

  /// The open file, for attributes and datasets.
  public var handle: H5File {
    guard let file else { preconditionFailure("KernelFileWriter used after commit or discard") }
    return file
  }

  /// Creates (once) and returns the dataset `name`.
  public func dataset(_ name: String, shape: [Int], type: ScalarType, chunk: [Int]?) throws -> H5Dataset {
    if let d = datasets[name] { return d }
    let d = try handle.createDataset(name, shape: shape, type: type, chunk: chunk)
    datasets[name] = d
    return d
  }

  /// Writes integer labels to `name`.
  public func writeLabels(_ name: String, _ labels: [Int64]) throws {
    let d = try handle.createInt64Dataset(name, shape: [labels.count])
    try labels.withUnsafeBufferPointer { try d.write($0, start: [0], count: [labels.count]) }
  }

  /// Closes, syncs and renames the temporary file over the destination.
  public func commit() throws {
    do {
      try handle.flush()
      datasets.removeAll()
      file = nil  // closes the file
      try fsyncPath(temporaryPath)
    } catch {
      // A full disk fails here, at the flush: the temporary file goes, whoever holds `self`.
      file = nil
      datasets.removeAll()
      unlink(temporaryPath)
      throw error
    }
    guard rename(temporaryPath, destination) == 0 else {
      let reason = String(cString: strerror(errno))
      discard()
      throw StorageError(destination, "cannot move the finished file into place: \(reason)")
    }
    try? fsyncPath(URL(fileURLWithPath: destination).deletingLastPathComponent().path)
    Self.removeStalePartials(of: destination)
  }

  /// Removes the hidden temporary files of earlier runs for the same destination whose process
  /// is gone (killed by a signal, the OOM killer or a scheduler): a later success leaves no
  /// gigabytes behind. A file of a process still running on this host is left alone.
  public static func removeStalePartials(of destination: String) {
    let folder = URL(fileURLWithPath: destination).deletingLastPathComponent().path
    let prefix = URL(fileURLWithPath: partialPrefix(of: destination)).lastPathComponent
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
    for name in names where name.hasPrefix(prefix) {
      guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
      if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder + "/" + name) }
    }
  }

  /// The temporary files' path before the process id: `.<name>.partial-` beside `destination`.
  static func partialPrefix(of destination: String) -> String {
    derivedPath(of: destination, suffix: ".partial-", reserve: 10)
  }

  /// Drops the temporary file (idempotent).
  public func discard() {
    datasets.removeAll()
    if file != nil {
      file = nil
      unlink(temporaryPath)
    }
  }
}

/// `fsync` of a file or folder by path.
public func fsyncPath(_ path: String) throws {
  let fd = open(path, O_RDONLY)
  guard fd >= 0 else { throw StorageError(path, "cannot open for fsync: \(String(cString: strerror(errno)))") }
  defer { close(fd) }
  guard fsync(fd) == 0 else { throw StorageError(path, "fsync failed: \(String(cString: strerror(errno)))") }
}
