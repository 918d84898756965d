import Testing
@testable import GramTiling

@Suite("tile plan and assignment")
struct TilePlanTests {
  @Test("tiles cover the upper triangle and the test block exactly once", arguments: [(1, 0, 1), (10, 0, 3), (10, 7, 3), (64, 0, 64), (100, 33, 64), (257, 100, 16), (5, 3, 100)])
  func coverage(n: Int, m: Int, tile: Int) {
    let plan = TilePlan(trainCount: n, testCount: m, tileSize: tile)
    var train = [Int](repeating: 0, count: n * n), test = [Int](repeating: 0, count: m * n)
    for index in 0..<plan.count {
      let t = plan.tile(index)
      #expect(t.index == index)
      for i in t.rows { for j in t.cols {
        if t.block == .train {
          train[i * n + j] += 1
          if !t.isDiagonal { train[j * n + i] += 1 }
        } else { test[i * n + j] += 1 }
      } }
    }
    #expect(train.allSatisfy { $0 == 1 } || (0..<n).allSatisfy { i in (0..<n).allSatisfy { j in train[i * n + j] == 1 } })
    #expect(test.allSatisfy { $0 == 1 })
    #expect(plan.totalCost == Double(n * (n + 1) / 2 + (n % tile == 0 ? 0 : 0)) + Double(m * n)
            || plan.totalCost >= Double(n * (n + 1) / 2 + m * n))
  }

  @Test("tile(index) inverts the enumeration for big plans")
  func bigPlan() {
    let plan = TilePlan(trainCount: 10_000_000, testCount: 1_000_000, tileSize: 1024)
    var expectedIndex = 0
    for r in [0, 1, 2, 4000, 9764, 9765] {
      // Row r of the triangle starts after r rows of decreasing length.
      expectedIndex = (0..<r).reduce(0) { $0 + plan.trainTiles - $1 }
      let t = plan.tile(expectedIndex)
      #expect(t.tileRow == r && t.tileCol == r && t.isDiagonal)
    }
    let last = plan.tile(plan.count - 1)
    #expect(last.block == .test && last.rows.upperBound == 1_000_000 && last.cols.upperBound == 10_000_000)
  }

  @Test("assignment: every tile once, balanced, and more ranks than tiles", arguments: [1, 2, 3, 7, 64, 1000])
  func assignment(ranks: Int) {
    let plan = TilePlan(trainCount: 5000, testCount: 1000, tileSize: 256)
    let a = TileAssignment(plan: plan, ranks: ranks)
    let all = a.tilesByRank.flatMap { $0 }.sorted()
    #expect(all == Array(0..<plan.count))
    let maxTile = (0..<plan.count).map { plan.cost(plan.tile($0)) }.max()!
    let mean = plan.totalCost / Double(ranks)
    #expect(a.workByRank.max()! <= mean + maxTile)
    if ranks > plan.count { #expect(a.tilesByRank.filter(\.isEmpty).count == ranks - plan.count) }
  }
}

@Suite("plan summary against the real assignment")
struct PlanSummaryTests {
  @Test("per-rank loads and counts of the closed-form summary equal the build's assignment", arguments: [1, 2, 3, 7, 64, 1000])
  func summaryMatchesAssignment(ranks: Int) {
    for (n, m, tile) in [(5000, 1000, 256), (60000, 10000, 1024), (1000, 0, 100), (777, 333, 64)] {
      let plan = TilePlan(trainCount: n, testCount: m, tileSize: tile)
      let real = TileAssignment(plan: plan, ranks: ranks)
      let summary = TileAssignment.summary(plan: plan, ranks: ranks)
      #expect(summary.workByRank == real.workByRank, "n=\(n) m=\(m) tile=\(tile) ranks=\(ranks)")
      #expect(summary.countByRank == real.countByRank)
      #expect(real.tilesByRank.map(\.count) == real.countByRank)
      #expect(abs(real.workByRank.reduce(0, +) - plan.totalCost) < 1e-6 * plan.totalCost)
    }
  }

  @Test("an internet-scale summary covers every tile and balances")
  func huge() {
    let plan = TilePlan(trainCount: 10_000_000, testCount: 1_000_000, tileSize: 1024)
    let s = TileAssignment.summary(plan: plan, ranks: 4096)
    #expect(s.countByRank.reduce(0, +) == plan.count)
    #expect(s.imbalance < 0.01)
  }
}

@Suite("rows a rank holds")
struct HeldRowsTests {
  /// The closed-form estimate bounds the real assignment's largest held set from above (within
  /// 3.5×: it allows for runs that straddle bands, kinds and the triangle's tip, which the
  /// largest rank rarely has all of); and with many ranks a rank holds a small part of the data.
  @Test("the plan's held-rows estimate bounds every rank's real blocks", arguments: [
    (60000, 10000, 1024, 2), (60000, 10000, 1024, 16), (200_000, 0, 1024, 64), (200_000, 20000, 512, 300),
    (100_000, 5000, 256, 1000), (5000, 1000, 256, 7), (3000, 0, 100, 4096),
  ])
  func estimateBoundsReality(n: Int, m: Int, tile: Int, ranks: Int) {
    let plan = TilePlan(trainCount: n, testCount: m, tileSize: tile)
    let a = TileAssignment(plan: plan, ranks: ranks)
    var largest = 0
    for rank in 0..<ranks {
      let b = TileAssignment.blocks(of: a.tiles(of: rank), plan: plan)
      let rows = RowBlocks(blocks: b.train, tileSize: tile, total: n).count + RowBlocks(blocks: b.test, tileSize: tile, total: m).count
      largest = max(largest, rows)
    }
    let estimate = TileAssignment.heldRowsEstimate(plan: plan, ranks: ranks)
    print("held rows n=\(n) m=\(m) tile=\(tile) ranks=\(ranks): largest \(largest), estimate \(estimate)")
    #expect(estimate >= largest)
    #expect(Double(estimate) <= 3.5 * Double(max(largest, tile)))
    if ranks >= 64 { #expect(Double(largest) < 0.5 * Double(n + m)) }
  }

  @Test("packed rows map tile ranges into the held blocks")
  func packing() {
    let r = RowBlocks(blocks: [3, 0, 8], tileSize: 10, total: 75)
    #expect(r.blocks == [0, 3])        // block 8 starts past the end
    #expect(r.count == 20)
    #expect(r.packed(30..<40) == 10..<20)
    #expect(r.packed(2..<5) == 2..<5)
    #expect(r.sampleRanges == [0..<10, 30..<40])
    let edge = RowBlocks(blocks: [7], tileSize: 10, total: 75)
    #expect(edge.count == 5 && edge.packed(70..<75) == 0..<5)
  }
}
