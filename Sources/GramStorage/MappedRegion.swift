import Foundation

/// A kernel region mapped read-only into memory (`mmap`, shared): tiles are read in place, at
/// the region's row stride (its width, or a tiled region's chunk width), with no copy and no
/// allocation. The pages are the page cache's, so ranks on one host share them instead of each
/// holding a copy (a contiguous kernel is there right after its build; a tiled one, written
/// directly to the disk, is read in). The file's size is checked against the region
/// when it is mapped; a file truncated while mapped would fault (the solve's input must not be
/// rewritten under it, as with every reader).
public final class MappedRegion: @unchecked Sendable {
  public let path: String
  public let region: KernelRegion
  private let mapping: UnsafeMutableRawPointer
  private let mappedLength: Int
  /// The file offset the mapping starts at.
  private let start: Int

  public init(path: String, region: KernelRegion) throws {
    self.path = path
    self.region = region
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw StorageError(path, "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw StorageError(path, "cannot stat: \(String(cString: strerror(errno)))") }
    let (end, overflow) = region.offset.addingReportingOverflow(region.byteCount)
    guard !overflow, region.offset >= 0, Int(st.st_size) >= end else {
      throw StorageError(path, "\(region.name) ends at byte \(end), beyond the file's \(st.st_size) (truncated?)")
    }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = region.offset / page * page
    mappedLength = max(1, end - start)
    // At an address congruent to the file offset modulo 2 MiB: the kernel maps a read fault's
    // neighbours in windows aligned in the address space (fault-around), and whole folios of the
    // page cache, which are aligned in the file (up to 2 MiB); with both alignments agreeing, a
    // tiled kernel's chunk (aligned in the file, `H5File.tileAlignment`) maps no page of its
    // neighbours.
    let align = 2 << 20
    guard let reserved = mmap(nil, mappedLength + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), reserved != MAP_FAILED else {
      throw StorageError(path, "cannot map \(region.name): \(String(cString: strerror(errno)))")
    }
    let low = Int(bitPattern: reserved)
    let at = low + ((start % align) - low % align + align) % align
    guard let p = mmap(UnsafeMutableRawPointer(bitPattern: at), mappedLength, PROT_READ, MAP_SHARED | MAP_FIXED, fd, off_t(start)),
          p != MAP_FAILED else {
      munmap(reserved, mappedLength + align)
      throw StorageError(path, "cannot map \(region.name): \(String(cString: strerror(errno)))")
    }
    // The reservation around the mapping goes back.
    if at > low { munmap(reserved, at - low) }
    let tail = low + mappedLength + align - (at + mappedLength)
    if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: at + mappedLength), tail) }
    mapping = p
    self.start = start
  }

  deinit { munmap(mapping, mappedLength) }

  /// Bytes of this mapping in the process's resident set now (its `Rss` in `/proc/self/smaps`):
  /// the pages used, and those the kernel mapped around them. Nil where that file is missing.
  public func residentBytes() -> Int? {
    guard let text = procText("/proc/self/smaps") else { return nil }
    let start = String(UInt(bitPattern: mapping), radix: 16)
    var inside = false
    for line in text.split(separator: "\n") {
      if let dash = line.firstIndex(of: "-"), dash > line.startIndex, line[..<dash].allSatisfy(\.isHexDigit) {  // a mapping's first line
        inside = line[..<dash].drop(while: { $0 == "0" }) == start
      } else if inside, line.hasPrefix("Rss:") {
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
      }
    }
    return nil
  }

  /// Element (`row`, `col`) of the region as `T` (the region's scalar type); the rows of a
  /// block inside one chunk (`KernelRegion.isStrided`) are `region.rowStride` elements apart.
  public func pointer<T>(_: T.Type, row: Int, col: Int) -> UnsafePointer<T> {
    precondition(MemoryLayout<T>.size == region.scalarType.byteCount, "MappedRegion.pointer: not the region's type")
    precondition(row >= 0 && row < region.rows && col >= 0 && col < region.cols, "MappedRegion.pointer: outside \(region.name)")
    return (UnsafeRawPointer(mapping) + (region.byteOffset(row: row, col: col) - start)).assumingMemoryBound(to: T.self)
  }

  /// Element (`row`, `col`), widened to `Double`.
  public func value(row: Int, col: Int) -> Double {
    switch region.scalarType {
    case .float32: Double(pointer(Float.self, row: row, col: col).pointee)
    case .float64: pointer(Double.self, row: row, col: col).pointee
    }
  }

  /// A copy of the `rows × cols` block at (`rowStart`, `colStart`), row-major.
  public func read(rowStart: Int, colStart: Int, rows: Int, cols: Int) -> StoredValues {
    precondition(rowStart >= 0 && colStart >= 0 && rowStart + rows <= region.rows && colStart + cols <= region.cols,
                 "MappedRegion.read: block outside \(region.name)")
    func copy<T>(_: T.Type, zero: T) -> [T] {
      var out = [T](repeating: zero, count: rows * cols)
      out.withUnsafeMutableBufferPointer { o in
        region.forEachRun(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) { _, i, j, n in
          (o.baseAddress! + i * cols + j).update(from: pointer(T.self, row: rowStart + i, col: colStart + j), count: n)
        }
      }
      return out
    }
    switch region.scalarType {
    case .float32: return .float32(copy(Float.self, zero: 0))
    case .float64: return .float64(copy(Double.self, zero: 0))
    }
  }

  /// True when no value of the block is NaN or infinite (`StoredValues.allFinite`'s test, in place).
  public func allFinite(rowStart: Int, colStart: Int, rows: Int, cols: Int) -> Bool {
    guard rows > 0, cols > 0 else { return true }
    let size = region.scalarType.byteCount
    func scan<T>(_ s: FiniteScan<T>) -> Bool {
      var s = s
      region.forEachRun(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) { _, i, j, n in
        s.add(UnsafeRawBufferPointer(start: pointer(T.self, row: rowStart + i, col: colStart + j), count: n * size))
      }
      return s.allFinite
    }
    switch region.scalarType {
    case .float32: return scan(FiniteScan<UInt32>.float32)
    case .float64: return scan(FiniteScan<UInt64>.float64)
    }
  }
}

extension MappedRegion {
  /// `allFinite` and the `checksum64` of the block's values (row-major, as stored) in one
  /// sweep over the mapping: what a tile's first use checks (`TileChecksums`).
  public func scan(rowStart: Int, colStart: Int, rows: Int, cols: Int) -> (allFinite: Bool, checksum: UInt64) {
    let size = region.scalarType.byteCount
    var sum = ByteChecksum64()
    func run<T>(_ s: FiniteScan<T>) -> Bool {
      var s = s
      region.forEachRun(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) { _, i, j, n in
        let bytes = UnsafeRawBufferPointer(start: pointer(T.self, row: rowStart + i, col: colStart + j), count: n * size)
        s.add(bytes)
        sum.add(bytes)
      }
      return s.allFinite
    }
    guard rows > 0, cols > 0 else { return (true, sum.finish()) }
    let finite: Bool
    switch region.scalarType {
    case .float32: finite = run(FiniteScan<UInt32>.float32)
    case .float64: finite = run(FiniteScan<UInt64>.float64)
    }
    return (finite, sum.finish())
  }
}

/// The whole text of a kernel pseudo-file (`/proc/self/…`), read to its end: such files report
/// a size of 0, and a read sized from it stops after the first page. Nil when it cannot be read.
public func procText(_ path: String) -> String? {
  guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
  defer { try? handle.close() }
  return String(data: handle.readDataToEndOfFile(), encoding: .utf8)
}

/// The machine's physical memory (`MemTotal` of `/proc/meminfo`), nil where it is missing:
/// the bound for what one process may plan to hold.
public func physicalMemoryBytes() -> Double? {
  guard let text = procText("/proc/meminfo"),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
        let kb = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return nil }
  return kb * 1024
}

/// Free bytes for an unprivileged writer on the filesystem of `folder`, nil where unknown.
public func freeBytes(folder: String) -> Double? {
  var s = statvfs()
  guard statvfs(folder, &s) == 0 else { return nil }
  return Double(s.f_bavail) * Double(s.f_frsize)
}

/// Bytes in binary units (`1.5 GiB`), for messages.
public func byteSize(_ bytes: Double) -> String {
  let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
  var v = bytes, u = 0
  while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
  return u == 0 ? String(format: "%.0f B", v) : String(format: "%.1f %@", v, units[u])
}
