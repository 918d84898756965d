import Foundation
import Testing
@testable import GramStorage

/// The checksums readers take of what they read: in pieces (a tile's rows in place) they equal
/// the build's checksum of the whole block.
@Suite("Recorded checksums")
struct RecordedChecksumsTests {
  @Test("ByteChecksum64 over any split of the bytes equals checksum64 of all of them")
  func pieces() {
    var g = SystemRandomNumberGenerator()
    for count in [0, 1, 7, 8, 9, 63, 64, 65, 1001] {
      let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
      let whole = bytes.withUnsafeBytes { checksum64($0) }
      for _ in 0..<20 {
        var sum = ByteChecksum64()
        var k = 0
        while k < count {
          let n = Int.random(in: 0...min(13, count - k), using: &g)
          bytes.withUnsafeBytes { sum.add(UnsafeRawBufferPointer(rebasing: $0[k..<(k + n)])) }
          k += n
        }
        #expect(sum.finish() == whole, "\(count) bytes")
      }
    }
  }

  @Test("MappedRegion.scan gives the checksum of the copied block (tiled regions, blocks across chunks)",
        arguments: [(ScalarType.float32, 7), (.float64, 32)])
  func mappedScan(type: ScalarType, tile: Int) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("scan-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/k.h5"
    let region = try TiledRegionTests().build(path, rows: 45, cols: 45, tile: tile, type: type)
    let mapped = try MappedRegion(path: path, region: region)
    for (r0, c0, r, c) in [(0, 0, tile, tile), (tile, tile, min(tile, 45 - tile), min(tile, 45 - tile)), (40, 0, 5, 45), (3, 5, 30, 11)] {
      let block = mapped.read(rowStart: r0, colStart: c0, rows: r, cols: c)
      let (finite, sum) = mapped.scan(rowStart: r0, colStart: c0, rows: r, cols: c)
      #expect(finite && sum == block.checksum, "\(type) tile \(tile) block (\(r0), \(c0))")
    }
  }
}
