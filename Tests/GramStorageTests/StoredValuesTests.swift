import Foundation
import Testing
@testable import GramStorage

@Suite("Stored values and region writes")
struct StoredValuesTests {
  @Test("allFinite finds a NaN or an infinity at any position, in both precisions, and nothing else")
  func allFinite() {
    let finite: [Double] = [0, -0.0, 1, -1, .ulpOfOne, .leastNonzeroMagnitude, .leastNormalMagnitude,
                            .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 3.4e38, -3.4e38, 1e-45]
    for n in [1, 7, 8, 9, 31, 64, 100] {
      let base = (0..<n).map { finite[$0 % finite.count] }
      // float32's own extremes in place of float64's (which round to infinity in float32).
      let base32 = base.map { abs($0) > 3.4e38 ? ($0 < 0 ? -3.4e38 : 3.4e38) : $0 }
      #expect(StoredValues.float64(base).allFinite)
      #expect(StoredValues(base32, as: .float32).allFinite)
      for bad in [Double.nan, .infinity, -.infinity, -Double.nan, Double(bitPattern: 0x7ff0_0000_0000_0001)] {
        for position in Set([0, n / 2, n - 1]) {
          var v = base, v32 = base32
          v[position] = bad
          v32[position] = bad
          #expect(!StoredValues.float64(v).allFinite, "float64 n=\(n) at \(position): \(bad)")
          #expect(!StoredValues(v32, as: .float32).allFinite, "float32 n=\(n) at \(position): \(bad)")
        }
      }
    }
    // Beyond float32's range: rounds to infinity in storage.
    #expect(!StoredValues([1, 1e39, 2], as: .float32).allFinite)
    #expect(StoredValues.float32([]).allFinite)
  }

  @Test("writeTransposed puts a block's transpose where write puts the transposed block, for any shape")
  func writeTransposed() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("regions-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    for type in [ScalarType.float32, .float64] {
      for (r, c) in [(1, 1), (3, 130), (130, 3), (64, 64), (65, 129), (200, 17)] {
        let n = 260
        let region = KernelRegion(name: "/k", offset: 100, rows: n, cols: n, type: type)
        let values = StoredValues((0..<(r * c)).map { Double($0) * 0.5 + 1 }, as: type)
        let a = folder + "/a-\(type)-\(r)-\(c)", b = folder + "/b-\(type)-\(r)-\(c)"
        for path in [a, b] { FileManager.default.createFile(atPath: path, contents: Data(count: 100 + n * n * type.byteCount)) }
        try RegionFile(path: a, writable: true).writeTransposed(values, to: region, rowStart: 5, colStart: 9, rows: r, cols: c,
                                                                 scratch: WriteScratch())
        try RegionFile(path: b, writable: true).write(values.transposed(rows: r, cols: c), to: region, rowStart: 5, colStart: 9, rows: c, cols: r)
        #expect(FileManager.default.contents(atPath: a) == FileManager.default.contents(atPath: b), "\(type) \(r)×\(c)")
        let back = try RegionFile(path: a, writable: false).read(region, rowStart: 5, colStart: 9, rows: c, cols: r)
        #expect(back.transposed(rows: c, cols: r) == values)
      }
    }
  }
}
