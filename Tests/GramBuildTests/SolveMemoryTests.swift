import Testing
@testable import GramAnalysis
@testable import GramTiling

@Suite("solve memory per rank")
struct SolveMemoryTests {
  /// The budget pays for the preconditioner and the vectors first; tiles get the rest, never
  /// more than the rank's share, and the share is the real assignment's largest within a tile.
  @Test("the budget is shared: preconditioner, vectors, then tiles", arguments: [(10_000, 1024, 1), (60_000, 1024, 2), (5_000, 300, 7)])
  func sharing(n: Int, tile: Int, ranks: Int) {
    let roomy = SolveMemory(n: n, tile: tile, bytesPerValue: 4, ranks: ranks, budget: 1 << 40, preconditioner: .rpcholesky, rank: 1000, columns: 10)
    #expect(roomy.tiles == roomy.share)
    let plan = TilePlan(trainCount: n, testCount: 0, tileSize: tile)
    let a = TileAssignment(plan: plan, ranks: ranks)
    let largest = (0..<ranks).map { r in a.tiles(of: r).reduce(0.0) { let t = plan.tile($1); return $0 + Double(t.rows.count * t.cols.count * 4) } }.max()!
    #expect(roomy.share >= largest && roomy.share <= largest + 2 * Double(tile * tile * 4))
    let tight = SolveMemory(n: n, tile: tile, bytesPerValue: 4, ranks: ranks, budget: Int(roomy.preconditioner + roomy.vectors) + 1000,
                            preconditioner: .rpcholesky, rank: 1000, columns: 10)
    #expect(tight.tileBudget == 1000 && tight.tiles == 1000)
    let starved = SolveMemory(n: n, tile: tile, bytesPerValue: 4, ranks: ranks, budget: 1, preconditioner: .nystrom, rank: 1000, columns: 10)
    #expect(starved.tileBudget == 0 && starved.tiles == 0)
    #expect(starved.preconditioner > roomy.preconditioner)   // the sketch holds more than RPCholesky
    let none = SolveMemory(n: n, tile: tile, bytesPerValue: 4, ranks: ranks, budget: 1 << 30, preconditioner: .none, rank: 1000, columns: 10)
    #expect(none.preconditioner == 0)
  }
}
