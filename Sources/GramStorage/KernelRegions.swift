import CFileIO
import Foundation

/// Where a contiguous kernel dataset's bytes are in its file: `rows × cols` elements of
/// `type`, row-major, from byte `offset` (`H5Dget_offset`). Ranks write and read tiles there
/// with `pwrite`/`pread`, outside HDF5, which only lays the file out and names the regions.
public struct KernelRegion: Codable, Sendable, Equatable {
  public let name: String
  public let offset: Int
  public let rows: Int
  public let cols: Int
  public let type: String

  public init(name: String, offset: Int, rows: Int, cols: Int, type: ScalarType) {
    self.name = name
    self.offset = offset
    self.rows = rows
    self.cols = cols
    self.type = type.rawValue
  }

  public var scalarType: ScalarType { ScalarType(rawValue: type) ?? .float64 }
  public var byteCount: Int { rows * cols * scalarType.byteCount }

  /// The region of an open contiguous dataset; nil when the dataset is chunked or unallocated
  /// (files of earlier releases).
  public static func of(_ d: H5Dataset) -> KernelRegion? {
    guard d.shape.count == 2, let type = d.scalarType, let offset = d.fileOffset else { return nil }
    return KernelRegion(name: d.name, offset: offset, rows: d.shape[0], cols: d.shape[1], type: type)
  }
}

/// A file opened by descriptor for block I/O on `KernelRegion`s: one `pwrite`/`pread` per row
/// of a block (rows of a tile are contiguous in the file, the tile is not). Thread-safe:
/// positional I/O on a descriptor shares no file position.
public final class RegionFile: @unchecked Sendable {
  public let path: String
  let fd: Int32
  /// On a filesystem of this host (`inTurn`).
  let isLocal: Bool

  public init(path: String, writable: Bool) throws {
    self.path = path
    fd = open(path, writable ? O_RDWR : O_RDONLY)
    guard fd >= 0 else { throw StorageError(path, "cannot open: \(String(cString: strerror(errno)))") }
    isLocal = cfio_is_local(fd) == 1
  }

  deinit { close(fd) }

  private func check(_ region: KernelRegion, _ rowStart: Int, _ colStart: Int, _ rows: Int, _ cols: Int) {
    precondition(rowStart >= 0 && colStart >= 0 && rowStart + rows <= region.rows && colStart + cols <= region.cols,
                 "RegionFile: block outside \(region.name)")
  }

  /// Writes the row-major `rows × cols` block `values` at (`rowStart`, `colStart`) of `region`.
  public func write(_ values: StoredValues, to region: KernelRegion, rowStart: Int, colStart: Int, rows: Int, cols: Int) throws {
    check(region, rowStart, colStart, rows, cols)
    precondition(values.type == region.scalarType && values.count == rows * cols, "RegionFile.write: block does not fit")
    let size = region.scalarType.byteCount
    try values.withUnsafeBytes { bytes in
      for i in 0..<rows {
        let offset = region.offset + ((rowStart + i) * region.cols + colStart) * size
        try writeFully(UnsafeRawBufferPointer(rebasing: bytes[(i * cols * size)..<((i + 1) * cols * size)]), at: offset, region: region)
      }
    }
  }

  /// Writes the transpose of the row-major `rows × cols` block `values`: a `cols × rows` block
  /// at (`rowStart`, `colStart`) of `region` (a tile's mirror below the diagonal). Transposed 64
  /// rows at a time into `scratch`, reused from call to call: no tile-sized copy is made.
  public func writeTransposed(_ values: StoredValues, to region: KernelRegion, rowStart: Int, colStart: Int,
                              rows: Int, cols: Int, scratch: WriteScratch) throws {
    check(region, rowStart, colStart, cols, rows)
    precondition(values.type == region.scalarType && values.count == rows * cols, "RegionFile.writeTransposed: block does not fit")
    let size = region.scalarType.byteCount
    let chunk = 64
    func run<T: SIMDScalar & BitwiseCopyable>(_ buffer: UnsafeBufferPointer<T>) throws {
      let dst = scratch.buffer(bytes: chunk * rows * size).bindMemory(to: T.self, capacity: chunk * rows)
      let src = buffer.baseAddress!
      for c0 in stride(from: 0, to: cols, by: chunk) {
        let cn = min(chunk, cols - c0)
        // 16 source rows at a time: their cache lines serve the next 16 columns too. Within
        // them, 4 × 4 blocks are transposed in registers; the ragged edges one by one.
        for i0 in stride(from: 0, to: rows, by: 16) {
          let i1 = min(i0 + 16, rows)
          var c = 0
          while c + 4 <= cn {
            var i = i0
            while i + 4 <= i1 {
              transpose4x4(src + i * cols + c0 + c, cols, dst + c * rows + i, rows)
              i += 4
            }
            while i < i1 {
              for k in 0..<4 { dst[(c + k) * rows + i] = src[i * cols + c0 + c + k] }
              i += 1
            }
            c += 4
          }
          while c < cn {
            for i in i0..<i1 { dst[c * rows + i] = src[i * cols + c0 + c] }
            c += 1
          }
        }
        for c in 0..<cn {
          let offset = region.offset + ((rowStart + c0 + c) * region.cols + colStart) * size
          try writeFully(UnsafeRawBufferPointer(start: dst + c * rows, count: rows * size), at: offset, region: region)
        }
      }
    }
    switch values {
    case .float32(let v): try v.withUnsafeBufferPointer(run)
    case .float64(let v): try v.withUnsafeBufferPointer(run)
    }
  }

  /// Runs `body` (a batch of writes) in turn with the other processes of this host that write
  /// the file: a buffered write holds the file's inode lock, and a process that finds it taken
  /// spins for it in the kernel, on the core its own compute needs (measured: a third of the
  /// system time of a 2-rank build). A lock taken per batch makes the waiting process sleep
  /// instead. Only on a local filesystem, where every writer is on this host; on network and
  /// cluster filesystems ranks on other hosts write in parallel, untouched. Advisory: if the
  /// lock cannot be taken the batch runs anyway.
  public func inTurn<R>(_ body: () throws -> R) rethrows -> R {
    guard isLocal, cfio_turn(fd, 1) == 0 else { return try body() }
    defer { _ = cfio_turn(fd, 0) }
    return try body()
  }

  /// Brings the pages of the `rows × cols` block at (`rowStart`, `colStart`) of `region` into
  /// the page cache before it is written (`POSIX_FADV_WILLNEED`: over a reserved or unwritten
  /// range the kernel fills them with zeros, no disk read). A write into a page not yet cached
  /// allocates and zero-fills it while holding the file's inode lock, which serializes the
  /// host's writers; brought in beforehand, outside the lock, the write only copies. On these
  /// VMs a page's first touch is the dear part (measured: a 2-rank build of all of
  /// Fashion-MNIST took 110 s instead of 146 s). Local filesystems only (on a network
  /// filesystem it could read); advisory.
  public func prepare(_ region: KernelRegion, rowStart: Int, colStart: Int, rows: Int, cols: Int) {
    check(region, rowStart, colStart, rows, cols)
    guard isLocal else { return }
    let size = region.scalarType.byteCount
    for i in 0..<rows {
      _ = cfio_will_need(fd, Int64(region.offset + ((rowStart + i) * region.cols + colStart) * size), Int64(cols * size))
    }
  }

  /// Starts writing rows [`rowStart`, `rowStart + rows`) of `region` to disk without waiting
  /// (one contiguous range: whole rows). Called for a band of rows this process has finished,
  /// so the disk writes sequentially while the next tiles compute, instead of everything at
  /// the final fsync. Advisory: a failure here changes nothing.
  public func startWriteback(_ region: KernelRegion, rowStart: Int, rows: Int) {
    guard rows > 0 else { return }
    let size = region.scalarType.byteCount
    _ = cfio_start_writeback(fd, Int64(region.offset + rowStart * region.cols * size), Int64(rows * region.cols * size))
  }

  private func writeFully(_ bytes: UnsafeRawBufferPointer, at offset: Int, region: KernelRegion) throws {
    try writeFully(bytes, at: offset, what: region.name)
  }

  private func writeFully(_ bytes: UnsafeRawBufferPointer, at offset: Int, what: String) throws {
    var done = 0
    while done < bytes.count {
      let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
      if n < 0 {
        if errno == EINTR { continue }
        let code = errno
        throw StorageError(path, "writing \(what) failed: \(String(cString: strerror(code)))" + (code == ENOSPC ? " (the filesystem is full)" : ""))
      }
      done += n
    }
  }

  /// Reads the `rows × cols` block at (`rowStart`, `colStart`) of `region`, row-major.
  public func read(_ region: KernelRegion, rowStart: Int, colStart: Int, rows: Int, cols: Int) throws -> StoredValues {
    check(region, rowStart, colStart, rows, cols)
    let size = region.scalarType.byteCount
    func fill(_ raw: UnsafeMutableRawBufferPointer) throws {
      for i in 0..<rows {
        let offset = region.offset + ((rowStart + i) * region.cols + colStart) * size
        var done = 0
        let want = cols * size
        while done < want {
          let n = pread(fd, raw.baseAddress! + i * want + done, want - done, off_t(offset + done))
          if n < 0 && errno == EINTR { continue }
          guard n > 0 else {
            throw StorageError(path, "reading \(region.name) failed: " + (n == 0 ? "the file ends early (truncated?)" : String(cString: strerror(errno))))
          }
          done += n
        }
      }
    }
    switch region.scalarType {
    case .float32:
      var v = [Float](repeating: 0, count: rows * cols)
      try v.withUnsafeMutableBytes(fill)
      return .float32(v)
    case .float64:
      var v = [Double](repeating: 0, count: rows * cols)
      try v.withUnsafeMutableBytes(fill)
      return .float64(v)
    }
  }

  /// Writes raw bytes at `offset` (the tile checksums' dataset).
  public func write(bytes: [UInt8], at offset: Int, what: String) throws {
    try bytes.withUnsafeBytes { try writeFully($0, at: offset, what: what) }
  }

  /// Reserves `bytes` of disk for the file (`fallocate`), so that a full disk is an error now,
  /// not in the middle of the build. Filesystems that cannot allocate are left as they are
  /// (emulating it would write every block).
  public func reserve(_ bytes: Int) throws {
    guard bytes > 0 else { return }
    if cfio_reserve(fd, Int64(bytes)) != 0 {
      let code = errno
      if code == EOPNOTSUPP || code == ENOSYS || code == EINVAL { return }
      throw StorageError(path, "cannot reserve \(bytes) bytes: \(String(cString: strerror(code)))" + (code == ENOSPC ? " (the filesystem is full)" : ""))
    }
  }

  /// `fdatasync`: this process's writes are on disk.
  public func sync() throws {
    guard fdatasync(fd) == 0 else { throw StorageError(path, "fsync failed: \(String(cString: strerror(errno)))") }
  }
}

/// Writes the transpose of the 4 × 4 block at `source` (rows `sourceStride` apart) at
/// `destination` (rows `destinationStride` apart), through SIMD registers.
@inline(__always)
func transpose4x4<T: SIMDScalar & BitwiseCopyable>(_ source: UnsafePointer<T>, _ sourceStride: Int,
                                                   _ destination: UnsafeMutablePointer<T>, _ destinationStride: Int) {
  func load(_ r: Int) -> SIMD4<T> { UnsafeRawPointer(source + r * sourceStride).loadUnaligned(as: SIMD4<T>.self) }
  let (a, b, c, d) = (load(0), load(1), load(2), load(3))
  // (a0 a2 b0 b2), (a1 a3 b1 b3), (c0 c2 d0 d2), (c1 c3 d1 d3), then their even and odd halves.
  let ab = SIMD8(lowHalf: a, highHalf: b), cd = SIMD8(lowHalf: c, highHalf: d)
  let even = SIMD8(lowHalf: ab.evenHalf, highHalf: cd.evenHalf), odd = SIMD8(lowHalf: ab.oddHalf, highHalf: cd.oddHalf)
  func store(_ k: Int, _ column: SIMD4<T>) {
    UnsafeMutableRawPointer(destination + k * destinationStride).storeBytes(of: column, as: SIMD4<T>.self)
  }
  store(0, even.evenHalf)
  store(1, odd.evenHalf)
  store(2, even.oddHalf)
  store(3, odd.oddHalf)
}

/// A buffer reused by one thread's writes (`RegionFile.writeTransposed`): grown on demand,
/// never shrunk. Not thread-safe: one per writer.
public final class WriteScratch: @unchecked Sendable {
  private var pointer: UnsafeMutableRawPointer?
  private var capacity = 0

  public init() {}

  deinit { pointer?.deallocate() }

  func buffer(bytes: Int) -> UnsafeMutableRawPointer {
    if let pointer, capacity >= bytes { return pointer }
    pointer?.deallocate()
    pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
    capacity = max(bytes, 64)
    return pointer!
  }
}

extension StoredValues {
  /// The values' bytes (little-endian, as stored).
  public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    switch self {
    case .float32(let v): try v.withUnsafeBytes(body)
    case .float64(let v): try v.withUnsafeBytes(body)
    }
  }
}

/// The record that a tile is in the kernel file: `<folder>/tile-<index>.done`, a line of text
/// naming the job's fingerprint, the tile and the checksum of each kernel's upper-tile bytes.
/// Written atomically (temporary file, rename) after the tile's bytes, so a record never names
/// a tile whose write had not returned; a resume still checks the bytes against it (a power
/// cut can lose data the record outlived).
public struct TileRecord: Sendable, Equatable {
  public let index: Int
  public let checksums: [UInt64]

  public init(index: Int, checksums: [UInt64]) {
    self.index = index
    self.checksums = checksums
  }

  public static func fileName(_ index: Int) -> String { String(format: "tile-%07d.done", index) }
  public static func path(folder: String, index: Int) -> String { folder + "/" + fileName(index) }

  /// The tile index a folder entry names, if it is a record.
  public static func index(fileName name: String) -> Int? {
    guard name.hasPrefix("tile-"), name.hasSuffix(".done") else { return nil }
    return Int(name.dropFirst(5).dropLast(5))
  }

  func line(fingerprint: String) -> String {
    "ntkgram-tile \(fingerprint) \(index) " + checksums.map(hex).joined(separator: " ") + "\n"
  }

  public func write(folder: String, fingerprint: String) throws {
    let final = Self.path(folder: folder, index: index)
    let temporary = folder + "/.\(Self.fileName(index)).tmp-\(getpid())"
    let bytes = Array(line(fingerprint: fingerprint).utf8)
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw StorageError(temporary, "cannot create tile record: \(String(cString: strerror(errno)))") }
    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    let code = errno
    close(fd)
    guard n == bytes.count else {
      unlink(temporary)
      throw StorageError(temporary, "cannot write tile record: \(String(cString: strerror(code)))")
    }
    guard rename(temporary, final) == 0 else {
      let message = String(cString: strerror(errno))
      unlink(temporary)
      throw StorageError(final, "cannot rename tile record: \(message)")
    }
  }

  /// Why a record cannot be used.
  public enum Problem: Error, Equatable, CustomStringConvertible {
    case missing
    case foreign(String)
    case corrupt(String)

    public var description: String {
      switch self {
      case .missing: "missing"
      case .foreign(let s): "from another job (\(s))"
      case .corrupt(let s): "corrupt (\(s))"
      }
    }
  }

  public static func read(folder: String, index: Int, fingerprint: String, kernels: Int) -> Result<TileRecord, Problem> {
    let path = Self.path(folder: folder, index: index)
    guard let data = FileManager.default.contents(atPath: path) else { return .failure(.missing) }
    guard data.count < 4096, let text = String(data: data, encoding: .utf8), text.hasSuffix("\n") else {
      return .failure(.corrupt("not a tile record"))
    }
    let parts = text.dropLast().split(separator: " ").map(String.init)
    guard parts.count == 3 + kernels, parts[0] == "ntkgram-tile" else { return .failure(.corrupt("not a tile record")) }
    guard parts[1] == fingerprint else { return .failure(.foreign("fingerprint \(parts[1])")) }
    guard Int(parts[2]) == index else { return .failure(.corrupt("names tile \(parts[2])")) }
    let sums = parts[3...].compactMap { $0.count == 16 ? UInt64($0, radix: 16) : nil }
    guard sums.count == kernels else { return .failure(.corrupt("bad checksums")) }
    return .success(TileRecord(index: index, checksums: sums))
  }
}
