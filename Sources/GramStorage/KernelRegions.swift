import CFileIO
import Foundation

/// Where a kernel dataset's bytes are in its file, for writers and readers outside HDF5
/// (`pwrite`/`pread`, `mmap`), which only lays the file out and names the regions: `rows × cols`
/// elements of `type` from byte `offset`, in one of two layouts.
///
/// - Contiguous (`chunkRows == 0`; format 2): row-major, at
///   `H5Dget_offset`. A tile's rows are `cols` apart, each a separate piece of the file.
/// - Tiles (format 3; large kernels by default): an HDF5 chunked dataset whose chunks are the build's
///   tiles, `chunkRows × chunkCols` each (row-major inside, edge chunks padded with zeros to
///   full size), allocated at once with HDF5's implicit index: chunk (a, b) starts at
///   `offset + (a·chunksAcross + b)·chunkBytes`. A tile is then one contiguous, aligned write
///   (`RegionFile.writeTile`), which can bypass the page cache, and one contiguous range to map.
public struct KernelRegion: Codable, Sendable, Equatable {
  public let name: String
  public let offset: Int
  public let rows: Int
  public let cols: Int
  public let type: String
  /// The chunk shape of a tiled region; 0 × 0 for a contiguous one.
  public let chunkRows: Int
  public let chunkCols: Int

  public init(name: String, offset: Int, rows: Int, cols: Int, type: ScalarType, chunk: (rows: Int, cols: Int)? = nil) {
    self.name = name
    self.offset = offset
    self.rows = rows
    self.cols = cols
    self.type = type.rawValue
    chunkRows = chunk?.rows ?? 0
    chunkCols = chunk?.cols ?? 0
  }

  public var scalarType: ScalarType { ScalarType(rawValue: type) ?? .float64 }
  public var isTiled: Bool { chunkRows > 0 && chunkCols > 0 }
  /// Chunks across one row of chunks (tiled).
  public var chunksAcross: Int { isTiled ? (cols + chunkCols - 1) / chunkCols : 1 }
  public var chunksDown: Int { isTiled ? (rows + chunkRows - 1) / chunkRows : 1 }
  /// Bytes of one chunk (tiled).
  public var chunkBytes: Int { chunkRows * chunkCols * scalarType.byteCount }
  /// Bytes the region takes in the file (a tiled region's edge chunks with their padding).
  public var byteCount: Int { isTiled ? chunksDown * chunksAcross * chunkBytes : rows * cols * scalarType.byteCount }

  /// Bytes a `rows × cols` kernel of `bytesPerValue`-byte values takes in the file, tiled in
  /// chunks of `tile` (edge chunks padded; a chunk no larger than the matrix) or contiguous (nil).
  public static func storedBytes(rows: Int, cols: Int, bytesPerValue: Int, tile: Int?) -> Double {
    guard let tile, tile > 0, rows > 0, cols > 0 else { return Double(rows) * Double(cols) * Double(bytesPerValue) }
    let (cr, cc) = (min(tile, rows), min(tile, cols))
    return Double((rows + cr - 1) / cr * cr) * Double((cols + cc - 1) / cc * cc) * Double(bytesPerValue)
  }

  /// The file offset of element (`row`, `col`).
  @inline(__always)
  public func byteOffset(row: Int, col: Int) -> Int {
    let size = scalarType.byteCount
    guard isTiled else { return offset + (row * cols + col) * size }
    let (a, i) = row.quotientAndRemainder(dividingBy: chunkRows)
    let (b, j) = col.quotientAndRemainder(dividingBy: chunkCols)
    return chunkOffset(a, b) + (i * chunkCols + j) * size
  }

  /// The file offset of chunk (`a`, `b`) of a tiled region (row `a`, column `b` of chunks).
  @inline(__always)
  public func chunkOffset(_ a: Int, _ b: Int) -> Int { offset + (a * chunksAcross + b) * chunkBytes }

  /// Elements between the starts of two consecutive rows of a block (within one chunk when tiled).
  public var rowStride: Int { isTiled ? chunkCols : cols }

  /// Whether the block lies in one chunk (always, when contiguous): its rows are then
  /// `rowStride` apart in the file.
  public func isStrided(rowStart: Int, colStart: Int, rows: Int, cols: Int) -> Bool {
    guard isTiled, rows > 0, cols > 0 else { return true }
    return rowStart / chunkRows == (rowStart + rows - 1) / chunkRows && colStart / chunkCols == (colStart + cols - 1) / chunkCols
  }

  /// The chunk whose top-left element is (`rowStart`, `colStart`), when a `rows × cols` block
  /// there is that whole chunk's data (its padding aside); nil otherwise or when contiguous.
  public func chunk(rowStart: Int, colStart: Int, rows: Int, cols: Int) -> (row: Int, col: Int)? {
    guard isTiled, rowStart % chunkRows == 0, colStart % chunkCols == 0,
          rows == min(chunkRows, self.rows - rowStart), cols == min(chunkCols, self.cols - colStart) else { return nil }
    return (rowStart / chunkRows, colStart / chunkCols)
  }

  /// The padding of a chunk holding a `rows × cols` block at its top left, as byte ranges
  /// (offset in the chunk, count): each row's columns past the block, then the rows past it.
  public func chunkPadding(rows: Int, cols: Int) -> [(offset: Int, count: Int)] {
    let size = scalarType.byteCount, stride = chunkCols * size
    var runs = cols < chunkCols ? (0..<rows).map { (offset: $0 * stride + cols * size, count: (chunkCols - cols) * size) } : []
    if rows < chunkRows { runs.append((offset: rows * stride, count: (chunkRows - rows) * stride)) }
    return runs
  }

  /// The block's bytes as contiguous runs of the file: `body(fileOffset, row, column, count)`
  /// for `count` elements of block row `row` from block column `column`, in row order.
  public func forEachRun(rowStart: Int, colStart: Int, rows: Int, cols: Int, _ body: (Int, Int, Int, Int) throws -> Void) rethrows {
    for i in 0..<rows {
      var j = 0
      while j < cols {
        let n = isTiled ? min(cols - j, chunkCols - (colStart + j) % chunkCols) : cols - j
        try body(byteOffset(row: rowStart + i, col: colStart + j), i, j, n)
        j += n
      }
    }
  }

  /// The region of an open dataset: contiguous, or chunked with HDF5's implicit index
  /// (`H5Dataset.tiledStorage`); nil when it is unallocated or chunked otherwise (format 1).
  public static func of(_ d: H5Dataset) -> KernelRegion? {
    guard d.shape.count == 2, let type = d.scalarType else { return nil }
    if let offset = d.fileOffset { return KernelRegion(name: d.name, offset: offset, rows: d.shape[0], cols: d.shape[1], type: type) }
    guard let tiled = d.tiledStorage, tiled.chunk.count == 2 else { return nil }
    return KernelRegion(name: d.name, offset: tiled.offset, rows: d.shape[0], cols: d.shape[1], type: type,
                        chunk: (tiled.chunk[0], tiled.chunk[1]))
  }
}

/// How a new kernel file stores its kernels (`--layout`).
public enum KernelStorageLayout: String, Sendable, CaseIterable {
  /// Contiguous below `tiledFrom` bytes per kernel, tiles from there on.
  case auto
  case contiguous
  case tiles

  /// A kernel of this many bytes or more is tiled by `auto`. Below, its writes are a fraction of
  /// a second either way and the contiguous layout is the one any reader can map with an offset
  /// (`numpy.memmap`, `H5Dget_offset`); above, writing through the page cache is most of a
  /// build's time beyond its compute on these VMs (docs/performance.md), and a solve maps
  /// 2.4 times its tiles' bytes (`MappedFootprint`).
  public static let tiledFrom = 256 << 20

  /// Whether a new file gets tiles: `rows` (the larger of the train and test counts written)
  /// by `cols` (the train count) values of `bytesPerValue` bytes in its largest kernel.
  public func tiles(rows: Int, cols: Int, bytesPerValue: Int) -> Bool {
    tiles(largestKernelBytes: Double(rows) * Double(cols) * Double(bytesPerValue))
  }

  /// Whether a file whose largest kernel dataset has `bytes` bytes gets tiles.
  public func tiles(largestKernelBytes bytes: Double) -> Bool {
    switch self {
    case .auto: bytes >= Double(Self.tiledFrom)
    case .contiguous: false
    case .tiles: true
    }
  }
}

/// A file opened by descriptor for block I/O on `KernelRegion`s: one `pwrite`/`pread` per
/// contiguous run of a block (a row of a contiguous region; a whole tile of a tiled one).
/// Thread-safe: positional I/O on a descriptor shares no file position.
public final class RegionFile: @unchecked Sendable {
  public let path: String
  let fd: Int32
  /// On a filesystem of this host (`inTurn`).
  let isLocal: Bool
  /// The same file opened for direct writes (`O_DIRECT`), for whole aligned tiles; -1 when the
  /// filesystem has none, or after one was refused.
  private var directFD: Int32 = -1
  private let directLock = NSLock()
  /// Offsets, lengths and buffers of direct writes are multiples of this (a page: the largest
  /// logical block of common disks).
  public static let directAlignment = 4096

  public init(path: String, writable: Bool) throws {
    self.path = path
    fd = open(path, writable ? O_RDWR : O_RDONLY)
    guard fd >= 0 else { throw StorageError(path, "cannot open: \(String(cString: strerror(errno)))") }
    isLocal = cfio_is_local(fd) == 1
    if writable { directFD = cfio_open_direct(path) }
  }

  deinit {
    close(fd)
    if directFD >= 0 { close(directFD) }
  }

  private func check(_ region: KernelRegion, _ rowStart: Int, _ colStart: Int, _ rows: Int, _ cols: Int) {
    precondition(rowStart >= 0 && colStart >= 0 && rowStart + rows <= region.rows && colStart + cols <= region.cols,
                 "RegionFile: block outside \(region.name)")
  }

  /// Whether a tiled region's whole-tile writes go to the disk directly: its chunks are
  /// aligned, and the file was opened for it.
  public func writesDirectly(_ region: KernelRegion) -> Bool {
    region.isTiled && region.offset % Self.directAlignment == 0 && region.chunkBytes % Self.directAlignment == 0
      && directLock.withLock { directFD >= 0 }
  }

  /// Writes the row-major `rows × cols` block `values` at (`rowStart`, `colStart`) of `region`:
  /// a tile of a tiled region as one write of its whole chunk (padding zeroed), through
  /// `scratch`; anything else a row piece at a time.
  public func write(_ values: StoredValues, to region: KernelRegion, rowStart: Int, colStart: Int, rows: Int, cols: Int,
                    scratch: WriteScratch? = nil) throws {
    check(region, rowStart, colStart, rows, cols)
    precondition(values.type == region.scalarType && values.count == rows * cols, "RegionFile.write: block does not fit")
    let size = region.scalarType.byteCount
    if let chunk = region.chunk(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) {
      let scratch = scratch ?? WriteScratch()
      let buffer = scratch.buffer(bytes: region.chunkBytes)
      let stride = region.chunkCols * size
      values.withUnsafeBytes { bytes in
        for i in 0..<rows { (buffer + i * stride).copyMemory(from: bytes.baseAddress! + i * cols * size, byteCount: cols * size) }
      }
      for run in region.chunkPadding(rows: rows, cols: cols) { (buffer + run.offset).initializeMemory(as: UInt8.self, repeating: 0, count: run.count) }
      try writeChunk(UnsafeRawBufferPointer(start: buffer, count: region.chunkBytes), region: region, chunk: chunk)
      return
    }
    try values.withUnsafeBytes { bytes in
      try region.forEachRun(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) { offset, i, j, n in
        try writeFully(UnsafeRawBufferPointer(start: bytes.baseAddress! + (i * cols + j) * size, count: n * size), at: offset, region: region)
      }
    }
  }

  /// Writes a whole chunk's bytes: directly to the disk when the region allows it (no page
  /// cache to fill: on these VMs a page's first touch is most of a buffered write's cost), else
  /// through the page cache. A direct write the filesystem refuses turns direct writes off and
  /// goes through the cache.
  private func writeChunk(_ bytes: UnsafeRawBufferPointer, region: KernelRegion, chunk: (row: Int, col: Int)) throws {
    let offset = region.chunkOffset(chunk.row, chunk.col)
    if writesDirectly(region), Int(bitPattern: bytes.baseAddress) % Self.directAlignment == 0 {
      let direct = directLock.withLock { directFD }
      var done = 0
      while done < bytes.count {
        let n = pwrite(direct, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
        if n < 0 && errno == EINTR { continue }
        if n < 0 && (errno == EINVAL || errno == EOPNOTSUPP) && done == 0 {
          directLock.withLock {
            if directFD >= 0 { close(directFD) }
            directFD = -1
          }
          break
        }
        if n < 0 {
          let code = errno
          throw StorageError(path, "writing \(region.name) failed: \(String(cString: strerror(code)))" + (code == ENOSPC ? " (the filesystem is full)" : ""))
        }
        done += n
      }
      if done == bytes.count { return }
    }
    try writeFully(bytes, at: offset, region: region)
  }

  /// Writes the transpose of the row-major `rows × cols` block `values`: a `cols × rows` block
  /// at (`rowStart`, `colStart`) of `region` (a tile's mirror below the diagonal). Into a tiled
  /// region's chunk, transposed whole into `scratch` and written at once; else 64 rows at a
  /// time, with no tile-sized copy.
  public func writeTransposed(_ values: StoredValues, to region: KernelRegion, rowStart: Int, colStart: Int,
                              rows: Int, cols: Int, scratch: WriteScratch) throws {
    check(region, rowStart, colStart, cols, rows)
    precondition(values.type == region.scalarType && values.count == rows * cols, "RegionFile.writeTransposed: block does not fit")
    let size = region.scalarType.byteCount
    let whole = region.chunk(rowStart: rowStart, colStart: colStart, rows: cols, cols: rows)
    let chunk = whole == nil ? 64 : cols
    let ld = whole == nil ? rows : region.chunkCols
    func run<T: SIMDScalar & BitwiseCopyable>(_ buffer: UnsafeBufferPointer<T>) throws {
      let capacity = whole == nil ? chunk * rows : region.chunkRows * region.chunkCols
      let dst = scratch.buffer(bytes: capacity * size).bindMemory(to: T.self, capacity: capacity)
      let src = buffer.baseAddress!
      for c0 in stride(from: 0, to: cols, by: chunk) {
        let cn = min(chunk, cols - c0)
        transposeBlock(src, rows: rows, cols: cols, c0: c0, cn: cn, dst, ld)
        guard whole == nil else { continue }
        for c in 0..<cn {
          try region.forEachRun(rowStart: rowStart + c0 + c, colStart: colStart, rows: 1, cols: rows) { offset, _, j, n in
            try writeFully(UnsafeRawBufferPointer(start: dst + c * rows + j, count: n * size), at: offset, region: region)
          }
        }
      }
      guard let whole else { return }
      for run in region.chunkPadding(rows: cols, cols: rows) {
        (UnsafeMutableRawPointer(dst) + run.offset).initializeMemory(as: UInt8.self, repeating: 0, count: run.count)
      }
      try writeChunk(UnsafeRawBufferPointer(start: dst, count: region.chunkBytes), region: region, chunk: whole)
    }
    switch values {
    case .float32(let v): try v.withUnsafeBufferPointer(run)
    case .float64(let v): try v.withUnsafeBufferPointer(run)
    }
  }

  /// Source columns [`c0`, `c0 + cn`) of the row-major `rows × cols` block at `src`, transposed
  /// to rows 0..<cn of `dst` (rows `stride` apart). 16 source rows at a time: their cache lines
  /// serve the next 16 columns too. Within them, 4 × 4 blocks are transposed in registers; the
  /// ragged edges one by one.
  private func transposeBlock<T: SIMDScalar & BitwiseCopyable>(_ src: UnsafePointer<T>, rows: Int, cols: Int, c0: Int, cn: Int,
                                                              _ dst: UnsafeMutablePointer<T>, _ stride: Int) {
    for i0 in Swift.stride(from: 0, to: rows, by: 16) {
      let i1 = min(i0 + 16, rows)
      var c = 0
      while c + 4 <= cn {
        var i = i0
        while i + 4 <= i1 {
          transpose4x4(src + i * cols + c0 + c, cols, dst + c * stride + i, stride)
          i += 4
        }
        while i < i1 {
          for k in 0..<4 { dst[(c + k) * stride + i] = src[i * cols + c0 + c + k] }
          i += 1
        }
        c += 4
      }
      while c < cn {
        for i in i0..<i1 { dst[c * stride + i] = src[i * cols + c0 + c] }
        c += 1
      }
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
  /// filesystem it could read); advisory; nothing for direct writes, which have no pages.
  public func prepare(_ region: KernelRegion, rowStart: Int, colStart: Int, rows: Int, cols: Int) {
    check(region, rowStart, colStart, rows, cols)
    guard isLocal, !writesDirectly(region) else { return }
    let size = region.scalarType.byteCount
    if let chunk = region.chunk(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) {
      _ = cfio_will_need(fd, Int64(region.chunkOffset(chunk.row, chunk.col)), Int64(region.chunkBytes))
      return
    }
    region.forEachRun(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) { offset, _, _, n in
      _ = cfio_will_need(fd, Int64(offset), Int64(n * size))
    }
  }

  /// Asks for the chunk of a tiled region that holds element (`row`, `col`) to be read into the
  /// page cache now, without waiting (`POSIX_FADV_WILLNEED`): asked for every chunk a reader
  /// will use, the disk reads them with many requests in flight while the reader works through
  /// the first ones (a cold tiled kernel is read by faults otherwise, one readahead window at a
  /// time). The pages come in the size the range allows, never past the chunk. Advisory;
  /// nothing for a contiguous region.
  public func readAhead(_ region: KernelRegion, row: Int, col: Int) {
    guard region.isTiled else { return }
    _ = cfio_will_need(fd, Int64(region.chunkOffset(row / region.chunkRows, col / region.chunkCols)), Int64(region.chunkBytes))
  }

  /// Starts writing rows [`rowStart`, `rowStart + rows`) of `region` to disk without waiting
  /// (one contiguous range: whole rows, or whole rows of chunks). Called for a band of rows
  /// this process has finished, so the disk writes sequentially while the next tiles compute,
  /// instead of everything at the final fsync. Advisory: a failure here changes nothing.
  public func startWriteback(_ region: KernelRegion, rowStart: Int, rows: Int) {
    guard rows > 0, !writesDirectly(region) else { return }
    let size = region.scalarType.byteCount
    if region.isTiled {
      let first = rowStart / region.chunkRows, last = (rowStart + rows - 1) / region.chunkRows
      let band = region.chunksAcross * region.chunkBytes
      _ = cfio_start_writeback(fd, Int64(region.offset + first * band), Int64((last - first + 1) * band))
      return
    }
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

  private func readFully(_ raw: UnsafeMutableRawPointer, count: Int, at offset: Int, what: String) throws {
    var done = 0
    while done < count {
      let n = pread(fd, raw + done, count - done, off_t(offset + done))
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        throw StorageError(path, "reading \(what) failed: " + (n == 0 ? "the file ends early (truncated?)" : String(cString: strerror(errno))))
      }
      done += n
    }
  }

  /// Reads the `rows × cols` block at (`rowStart`, `colStart`) of `region`, row-major: a block
  /// inside one chunk of a tiled region in one read, anything else a run at a time.
  public func read(_ region: KernelRegion, rowStart: Int, colStart: Int, rows: Int, cols: Int) throws -> StoredValues {
    check(region, rowStart, colStart, rows, cols)
    let size = region.scalarType.byteCount
    func fill(_ raw: UnsafeMutableRawBufferPointer) throws {
      guard rows > 0, cols > 0 else { return }
      if region.isTiled, region.isStrided(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) {
        let first = region.byteOffset(row: rowStart, col: colStart)
        let span = ((rows - 1) * region.chunkCols + cols) * size
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: span, alignment: 64)
        defer { buffer.deallocate() }
        try readFully(buffer, count: span, at: first, what: region.name)
        for i in 0..<rows {
          (raw.baseAddress! + i * cols * size).copyMemory(from: buffer + i * region.chunkCols * size, byteCount: cols * size)
        }
        return
      }
      try region.forEachRun(rowStart: rowStart, colStart: colStart, rows: rows, cols: cols) { offset, i, j, n in
        try readFully(raw.baseAddress! + (i * cols + j) * size, count: n * size, at: offset, what: region.name)
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

  /// Whether the padding of the tiled region's chunk holding element (`row`, `col`) is all
  /// zeros, as the build writes it (always true inside the matrix and for a contiguous region).
  /// A flipped byte there changes no value, but the file is no longer the one built.
  public func paddingIsZero(_ region: KernelRegion, row: Int, col: Int) throws -> Bool {
    guard region.isTiled else { return true }
    let (a, b) = (row / region.chunkRows, col / region.chunkCols)
    let rows = min(region.chunkRows, region.rows - a * region.chunkRows), cols = min(region.chunkCols, region.cols - b * region.chunkCols)
    guard rows < region.chunkRows || cols < region.chunkCols else { return true }
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: region.chunkBytes, alignment: 64)
    defer { buffer.deallocate() }
    try readFully(buffer, count: region.chunkBytes, at: region.chunkOffset(a, b), what: region.name)
    let bytes = UnsafeRawBufferPointer(start: buffer, count: region.chunkBytes)
    return region.chunkPadding(rows: rows, cols: cols).allSatisfy { bytes[$0.offset..<($0.offset + $0.count)].allSatisfy { $0 == 0 } }
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
    // Page-aligned: a whole chunk is written from here directly to the disk (`O_DIRECT`).
    pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: RegionFile.directAlignment)
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
