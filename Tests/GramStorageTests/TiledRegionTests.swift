import Foundation
import Testing
@testable import GramStorage

/// The tiled kernel layout (format 3): chunk arithmetic, the build's whole-chunk writes (direct
/// and through the page cache) against what HDF5 itself reads, the padding, and the mapping.
@Suite("Tiled kernel regions")
struct TiledRegionTests {
  func folder() throws -> String {
    let f = FileManager.default.temporaryDirectory.appendingPathComponent("tiled-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: f, withIntermediateDirectories: true)
    return f
  }

  /// A deterministic value for element (i, j) of a matrix.
  func value(_ i: Int, _ j: Int) -> Double { Double(i * 1000 + j) * 0.5 - 3 }

  @Test("element offsets, runs, strided blocks and whole chunks follow the row-major chunk grid")
  func arithmetic() {
    let r = KernelRegion(name: "/k", offset: 1000, rows: 10, cols: 7, type: .float64, chunk: (4, 3))
    #expect(r.isTiled && r.chunksAcross == 3 && r.chunksDown == 3 && r.chunkBytes == 96)
    #expect(r.byteCount == 9 * 96)
    // (5, 4): chunk (1, 1) = the 5th chunk, row 1 col 1 inside it.
    #expect(r.byteOffset(row: 5, col: 4) == 1000 + 4 * 96 + (1 * 3 + 1) * 8)
    #expect(r.byteOffset(row: 9, col: 6) == 1000 + 8 * 96 + (1 * 3 + 0) * 8)
    var runs: [[Int]] = []
    r.forEachRun(rowStart: 3, colStart: 1, rows: 2, cols: 5) { runs.append([$0, $1, $2, $3]) }
    #expect(runs == [[r.byteOffset(row: 3, col: 1), 0, 0, 2], [r.byteOffset(row: 3, col: 3), 0, 2, 3],
                     [r.byteOffset(row: 4, col: 1), 1, 0, 2], [r.byteOffset(row: 4, col: 3), 1, 2, 3]])
    #expect(r.isStrided(rowStart: 4, colStart: 3, rows: 4, cols: 3))
    #expect(!r.isStrided(rowStart: 3, colStart: 3, rows: 2, cols: 3))
    #expect(r.chunk(rowStart: 8, colStart: 6, rows: 2, cols: 1)! == (2, 2))
    #expect(r.chunk(rowStart: 8, colStart: 6, rows: 1, cols: 1) == nil)
    #expect(r.chunk(rowStart: 4, colStart: 3, rows: 4, cols: 2) == nil)
    let c = KernelRegion(name: "/k", offset: 8, rows: 10, cols: 7, type: .float32)
    #expect(!c.isTiled && c.byteOffset(row: 2, col: 3) == 8 + 17 * 4 && c.rowStride == 7 && c.byteCount == 280)
    #expect(KernelRegion.storedBytes(rows: 10, cols: 7, bytesPerValue: 8, tile: 4) == 12 * 8 * 8)
    #expect(KernelRegion.storedBytes(rows: 10, cols: 7, bytesPerValue: 8, tile: 64) == 10 * 7 * 8)
    #expect(KernelRegion.storedBytes(rows: 10, cols: 7, bytesPerValue: 8, tile: nil) == 10 * 7 * 8)
  }

  @Test("auto tiles kernels from 256 MiB; contiguous and tiles are what they say")
  func layoutChoice() {
    #expect(!KernelStorageLayout.auto.tiles(rows: 8000, cols: 8000, bytesPerValue: 4))
    #expect(KernelStorageLayout.auto.tiles(rows: 8192, cols: 8192, bytesPerValue: 4))
    #expect(KernelStorageLayout.auto.tiles(rows: 6000, cols: 6000, bytesPerValue: 8))
    #expect(KernelStorageLayout.tiles.tiles(rows: 3, cols: 3, bytesPerValue: 4))
    #expect(!KernelStorageLayout.contiguous.tiles(rows: 100_000, cols: 100_000, bytesPerValue: 8))
  }

  /// A tiled file as the build lays it out: `rows × cols` in chunks of `tile`, every tile written
  /// by `RegionFile` (upper blocks as they are, blocks below the diagonal of a square matrix as
  /// transposes of the blocks above, as mirrors are).
  func build(_ path: String, rows: Int, cols: Int, tile: Int, type: ScalarType) throws -> KernelRegion {
    let region: KernelRegion = try {
      let f = try H5File.create(path, chunkBytes: tile * tile * type.byteCount)
      let d = try f.createTiledDataset("/train/ntk", shape: [rows, cols], type: type, chunk: [tile, tile])
      return KernelRegion.of(d)!
    }()
    let file = try RegionFile(path: path, writable: true)
    let scratch = WriteScratch()
    for r0 in stride(from: 0, to: rows, by: tile) {
      for c0 in stride(from: 0, to: cols, by: tile) {
        let (r, c) = (min(tile, rows - r0), min(tile, cols - c0))
        if rows == cols && r0 > c0 {
          // The transpose of block (c0, r0), written as a mirror.
          let upper = StoredValues((0..<(c * r)).map { value(c0 + $0 / r, r0 + $0 % r).magnitude }, as: type)
          try file.writeTransposed(upper, to: region, rowStart: r0, colStart: c0, rows: c, cols: r, scratch: scratch)
        } else {
          let values = (0..<(r * c)).map { k -> Double in
            let (i, j) = (r0 + k / c, c0 + k % c)
            return rows == cols ? value(min(i, j), max(i, j)).magnitude : value(i, j)
          }
          try file.write(StoredValues(values, as: type), to: region, rowStart: r0, colStart: c0, rows: r, cols: c, scratch: scratch)
        }
      }
    }
    try file.sync()
    return region
  }

  @Test("whole-chunk writes, direct or cached, mirrors included, read back exactly through HDF5, pread and the mapping",
        arguments: [(ScalarType.float32, 32), (.float64, 32), (.float32, 7), (.float64, 64)])
  func writesReadBack(type: ScalarType, tile: Int) throws {
    let dir = try folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for (rows, cols) in [(150, 150), (45, 150), (150, 3), (400, 400)] {
      let path = dir + "/k-\(rows)-\(cols).h5"
      let region = try build(path, rows: rows, cols: cols, tile: tile, type: type)
      #expect(region.isTiled && region.chunkRows == min(tile, rows) && region.chunkCols == min(tile, cols))
      // 49 chunks of 64² float64 values (32 KiB), 1.5 MiB together: aligned, written directly.
      if rows == 400 && tile == 64 { #expect(try RegionFile(path: path, writable: true).writesDirectly(region)) }
      let expected = StoredValues((0..<(rows * cols)).map { k -> Double in
        let (i, j) = (k / cols, k % cols)
        return rows == cols ? value(min(i, j), max(i, j)).magnitude : value(i, j)
      }, as: type)
      let f = try H5File.open(path)
      let d = try f.dataset("/train/ntk")
      #expect(try d.readStored(start: [0, 0], count: [rows, cols]) == expected, "\(rows)×\(cols) tile \(tile)")
      #expect(KernelRegion.of(d) == region)
      let file = try RegionFile(path: path, writable: false)
      let mapped = try MappedRegion(path: path, region: region)
      for (r0, c0, r, c) in [(0, 0, rows, cols), (rows / 3, cols / 2, rows - rows / 3, cols - cols / 2), (rows - 1, 0, 1, cols)] {
        let want = try d.readStored(start: [r0, c0], count: [r, c])
        #expect(try file.read(region, rowStart: r0, colStart: c0, rows: r, cols: c) == want)
        #expect(mapped.read(rowStart: r0, colStart: c0, rows: r, cols: c) == want)
      }
      for r0 in stride(from: 0, to: rows, by: region.chunkRows) {
        for c0 in stride(from: 0, to: cols, by: region.chunkCols) { #expect(try file.paddingIsZero(region, row: r0, col: c0)) }
      }
    }
  }

  @Test("a chunk's padding: a flipped byte there is found, one inside the values is not padding")
  func padding() throws {
    let dir = try folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/k.h5"
    let region = try build(path, rows: 100, cols: 100, tile: 32, type: .float32)
    let file = try RegionFile(path: path, writable: true)
    // Chunk (3, 3) holds rows and columns 96..<100: its 5th row is padding, as are columns 4… of its first rows.
    let corner = region.offset + (3 * region.chunksAcross + 3) * region.chunkBytes
    for at in [corner + (5 * 32 + 1) * 4 + 2, corner + (0 * 32 + 10) * 4] {
      var byte: UInt8 = 0
      let fd = open(path, O_RDWR)
      _ = pread(fd, &byte, 1, off_t(at))
      var flipped = byte ^ 0x20
      _ = pwrite(fd, &flipped, 1, off_t(at))
      #expect(try !file.paddingIsZero(region, row: 97, col: 99))
      _ = pwrite(fd, &byte, 1, off_t(at))
      close(fd)
      #expect(try file.paddingIsZero(region, row: 97, col: 99))
    }
    #expect(try file.paddingIsZero(region, row: 0, col: 0))  // a full chunk has none
  }
}
