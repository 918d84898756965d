import Testing
@testable import GramTiling

struct MappedFootprintTests {
  /// The union of windows, by listing every byte of every tile row: the reference.
  static func bruteForce(_ tiles: [Tile], n: Int, bytes: Int, offset: Int, window: Int) -> Int {
    var windows = Set<Int>()
    for t in tiles {
      for i in t.rows {
        for j in t.cols {
          for b in 0..<bytes { windows.insert((offset + (i * n + j) * bytes + b) / window) }
        }
      }
    }
    return windows.count * window
  }

  @Test func matchesTheUnionOfWindowsOverAnySetOfTiles() {
    var rng = SystemRandomNumberGenerator()
    for trial in 0..<60 {
      let n = Int.random(in: 1...70, using: &rng), tile = Int.random(in: 1...12, using: &rng)
      let bytes = [4, 8].randomElement(using: &rng)!, window = [16, 64, 256].randomElement(using: &rng)!
      let offset = Int.random(in: 0..<1000, using: &rng)
      let plan = TilePlan(trainCount: n, testCount: 0, tileSize: tile)
      let tiles = (0..<plan.count).filter { _ in Bool.random(using: &rng) }.map(plan.tile)
      let expected = Self.bruteForce(tiles, n: n, bytes: bytes, offset: offset, window: window)
      #expect(MappedFootprint.bytes(of: tiles, columns: n, bytesPerValue: bytes, offset: offset, window: window) == expected,
              "trial \(trial): n \(n), tile \(tile), \(bytes)-byte values, window \(window), offset \(offset), \(tiles.count) tiles")
    }
  }

  @Test func aRankOfTwoMapsFarMoreThanItsTilesWhenTileRowsAreShorterThanTheWindow() {
    // Full Fashion-MNIST, float32, tiles of 1024, 2 ranks: a tile's row is 4 KiB of a 240 KB
    // matrix row, so the 64 KiB windows around it take in the neighbours and the lower triangle.
    let plan = TilePlan(trainCount: 60_000, testCount: 0, tileSize: 1024)
    let mine = TileAssignment(plan: plan, ranks: 2).tiles(of: 0).map(plan.tile)
    let tileBytes = mine.reduce(0) { $0 + $1.entryCount * 4 }
    let mapped = MappedFootprint.bytes(of: mine, columns: 60_000, bytesPerValue: 4)
    #expect(mapped > tileBytes * 3 / 2)
    #expect(mapped <= 60_000 * 60_000 * 4)
    // With windows no larger than a page-aligned tile row, nothing more is mapped.
    let aligned = TilePlan(trainCount: 4096, testCount: 0, tileSize: 1024)
    let all = (0..<aligned.count).map(aligned.tile)
    #expect(MappedFootprint.bytes(of: all, columns: 4096, bytesPerValue: 4, window: 4096)
            == all.reduce(0) { $0 + $1.entryCount * 4 })
  }
}

struct KeptTilesTests {
  @Test func keepsTilesInOrderWhileTheyFitAndASmallerOneAfterALargerDidNot() {
    // n = 10, tiles of 4: full tiles hold 16 values, the ragged last column 8, the corner 4.
    let plan = TilePlan(trainCount: 10, testCount: 0, tileSize: 4)
    let all = Array(0..<plan.count)
    #expect(plan.kept(all, bytesPerValue: 8, budget: Int.max) == all)
    #expect(plan.kept(all, bytesPerValue: 8, budget: 0).isEmpty)
    // Budget 20 values: tile 0 (16) is kept; tiles 1–4 (16, 8, 16, 8) would overflow it; the
    // 2 × 2 corner (4) still fits.
    #expect((0..<plan.count).map { plan.tile($0).entryCount } == [16, 16, 8, 16, 8, 4])
    #expect(plan.kept(all, bytesPerValue: 8, budget: 8 * 20) == [0, 5])
  }
}
