import Foundation
import Testing
@testable import GramStorage

@Suite("Mapped kernel regions and writers taking turns")
struct MappedRegionTests {
  func folder() throws -> String {
    let f = FileManager.default.temporaryDirectory.appendingPathComponent("mapped-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: f, withIntermediateDirectories: true)
    return f
  }

  @Test("a mapped region reads what pread reads, at any offset (not page-aligned) and block, in both precisions")
  func readsAsPread() throws {
    let dir = try folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for type in [ScalarType.float32, .float64] {
      for offset in [0, 100, 4096, 5000] {
        let (rows, cols) = (37, 1100)
        let region = KernelRegion(name: "/train/ntk", offset: offset, rows: rows, cols: cols, type: type)
        let path = dir + "/k-\(type)-\(offset)"
        FileManager.default.createFile(atPath: path, contents: Data(count: offset + region.byteCount + 3))
        let all = StoredValues((0..<(rows * cols)).map { Double($0) * 0.25 - 7 }, as: type)
        try RegionFile(path: path, writable: true).write(all, to: region, rowStart: 0, colStart: 0, rows: rows, cols: cols)
        let mapped = try MappedRegion(path: path, region: region)
        let file = try RegionFile(path: path, writable: false)
        for (r0, c0, r, c) in [(0, 0, rows, cols), (3, 1024, 5, 76), (36, 0, 1, cols), (10, 7, 0, 5)] {
          #expect(mapped.read(rowStart: r0, colStart: c0, rows: r, cols: c) == (try file.read(region, rowStart: r0, colStart: c0, rows: r, cols: c)))
          #expect(mapped.allFinite(rowStart: r0, colStart: c0, rows: r, cols: c))
        }
        #expect(mapped.value(row: 2, col: 3) == Double(2 * cols + 3) * 0.25 - 7)
      }
    }
  }

  @Test("allFinite in place finds a NaN or an infinity in the block only, and a truncated file is refused")
  func finiteAndTruncated() throws {
    let dir = try folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for type in [ScalarType.float32, .float64] {
      let region = KernelRegion(name: "/train/ntk", offset: 8, rows: 20, cols: 30, type: type)
      let path = dir + "/k-\(type)"
      FileManager.default.createFile(atPath: path, contents: Data(count: 8 + region.byteCount))
      let file = try RegionFile(path: path, writable: true)
      try file.write(StoredValues([.nan], as: type), to: region, rowStart: 12, colStart: 17, rows: 1, cols: 1)
      try file.write(StoredValues([.infinity], as: type), to: region, rowStart: 0, colStart: 29, rows: 1, cols: 1)
      let mapped = try MappedRegion(path: path, region: region)
      #expect(!mapped.allFinite(rowStart: 10, colStart: 10, rows: 10, cols: 10))
      #expect(!mapped.allFinite(rowStart: 0, colStart: 29, rows: 1, cols: 1))
      #expect(mapped.allFinite(rowStart: 0, colStart: 0, rows: 12, cols: 29))
      #expect(mapped.allFinite(rowStart: 13, colStart: 0, rows: 7, cols: 30))
      #expect(mapped.allFinite(rowStart: 12, colStart: 18, rows: 1, cols: 12))
      #expect(truncate(path, off_t(8 + region.byteCount - 1)) == 0)
      #expect(throws: StorageError.self) { try MappedRegion(path: path, region: region) }
    }
  }

  @Test("two opens of one local file take turns: the second waits until the first's batch ends")
  func turns() throws {
    let dir = try folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/k"
    FileManager.default.createFile(atPath: path, contents: Data(count: 64))
    let a = try RegionFile(path: path, writable: true), b = try RegionFile(path: path, writable: true)
    #expect(a.isLocal)
    let entered = NSLock()
    nonisolated(unsafe) var secondRan = false
    let done = DispatchSemaphore(value: 0)
    a.inTurn {
      Thread.detachNewThread {
        b.inTurn { entered.withLock { secondRan = true } }
        done.signal()
      }
      Thread.sleep(forTimeInterval: 0.3)
      #expect(entered.withLock { !secondRan }, "the second writer ran during the first's batch")
    }
    #expect(done.wait(timeout: .now() + 10) == .success)
    #expect(entered.withLock { secondRan })
  }

  @Test("prepare changes no byte, over written and unwritten ranges alike")
  func prepareKeepsBytes() throws {
    let dir = try folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let region = KernelRegion(name: "/train/ntk", offset: 300, rows: 50, cols: 1500, type: .float32)
    let path = dir + "/k"
    FileManager.default.createFile(atPath: path, contents: Data(count: 300 + region.byteCount))
    let file = try RegionFile(path: path, writable: true)
    try file.write(StoredValues((0..<(10 * 1500)).map { Double($0) + 0.5 }, as: .float32), to: region, rowStart: 5, colStart: 0,
                   rows: 10, cols: 1500)
    let before = FileManager.default.contents(atPath: path)
    file.prepare(region, rowStart: 0, colStart: 100, rows: 50, cols: 1400)
    file.prepare(region, rowStart: 49, colStart: 0, rows: 1, cols: 1500)
    #expect(FileManager.default.contents(atPath: path) == before)
  }
}
