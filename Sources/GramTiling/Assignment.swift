/// A static assignment of tiles to ranks that every rank computes alike, without talking.
///
/// Tiles take few distinct costs (full, diagonal, ragged-edge tiles), so they are grouped by
/// cost and the groups handed out most expensive first. Ranks are kept ordered by the work
/// they have (ties by rank); a group of k equal tiles gives every rank ⌊k/R⌋ tiles in full
/// rounds, and the k mod R left over to the least-loaded ranks, in that order. This is
/// longest-processing-time scheduling specialised to equal-cost groups: the spread between the
/// most and least loaded rank never exceeds the costliest tile, it runs in O(T + G·R log R)
/// for T tiles in G groups, and `summary` gives every rank's load without listing any tile
/// (plans for N = 10⁷ and thousands of ranks answer at once). Ranks beyond the tile count get
/// nothing.
public struct TileAssignment: Sendable {
  public let ranks: Int
  /// Work per rank (entries).
  public let workByRank: [Double]
  /// Tiles per rank.
  public let countByRank: [Int]
  /// For each cost group (most expensive first): its tiles in index order, and the rank
  /// order (by load) it was dealt to.
  private let groups: [(cost: Double, tiles: [Int], order: [Int])]

  /// Assigns every tile of `plan`.
  public init(plan: TilePlan, ranks: Int) {
    self.init(plan: plan, tiles: Array(0..<plan.count), ranks: ranks)
  }

  /// Assigns the tiles `tiles` of `plan` (those a resumed build still has to compute).
  public init(plan: TilePlan, tiles subset: [Int], ranks: Int) {
    var byCost: [Double: [Int]] = [:]
    for index in subset { byCost[plan.cost(plan.tile(index)), default: []].append(index) }
    let sizes = byCost.mapValues { $0.count }
    self.init(groupSizes: sizes, ranks: ranks, tiles: byCost)
  }

  private init(groupSizes: [Double: Int], ranks: Int, tiles: [Double: [Int]]?) {
    precondition(ranks >= 1, "TileAssignment: ranks must be ≥ 1")
    self.ranks = ranks
    var work = [Double](repeating: 0, count: ranks)
    var count = [Int](repeating: 0, count: ranks)
    var order = Array(0..<ranks)
    var groups: [(Double, [Int], [Int])] = []
    for cost in groupSizes.keys.sorted(by: >) {
      let k = groupSizes[cost]!
      groups.append((cost, tiles?[cost]?.sorted() ?? [], order))
      let rounds = k / ranks, extra = k % ranks
      for (position, rank) in order.enumerated() {
        let share = rounds + (position < extra ? 1 : 0)
        work[rank] += Double(share) * cost
        count[rank] += share
      }
      order.sort { work[$0] != work[$1] ? work[$0] < work[$1] : $0 < $1 }
    }
    workByRank = work
    countByRank = count
    self.groups = groups
  }

  /// Loads only (no tile lists): what `ntkgram plan` needs, for any plan size.
  public static func summary(plan: TilePlan, ranks: Int) -> TileAssignment {
    var sizes: [Double: Int] = [:]
    // Group sizes in closed form per tile-grid row of the triangle and of the test block.
    let t = plan.trainTiles
    for r in 0..<(plan.includesTrain ? t : 0) {
      let rowsCount = Double(min((r + 1) * plan.tileSize, plan.trainCount) - r * plan.tileSize)
      sizes[rowsCount * (rowsCount + 1) / 2, default: 0] += 1                       // diagonal tile
      if r + 1 < t {
        let lastCols = Double(plan.trainCount - (t - 1) * plan.tileSize)
        let full = t - r - 2                                                        // full-width tiles right of the diagonal
        if full > 0 { sizes[rowsCount * Double(plan.tileSize), default: 0] += full }
        sizes[rowsCount * lastCols, default: 0] += 1                                // the ragged last column
      }
    }
    for r in 0..<plan.testTiles {
      let rowsCount = Double(min((r + 1) * plan.tileSize, plan.testCount) - r * plan.tileSize)
      let lastCols = Double(plan.trainCount - (t - 1) * plan.tileSize)
      if t > 1 { sizes[rowsCount * Double(plan.tileSize), default: 0] += t - 1 }
      sizes[rowsCount * lastCols, default: 0] += 1
    }
    return TileAssignment(groupSizes: sizes, ranks: ranks, tiles: nil)
  }

  /// The tiles of `rank`, ascending (not available from `summary`).
  public func tiles(of rank: Int) -> [Int] {
    var mine: [Int] = []
    for (_, tiles, order) in groups {
      let k = tiles.count, rounds = k / ranks, extra = k % ranks
      guard let position = order.firstIndex(of: rank) else { continue }
      // Full rounds: the p-th rank in load order takes tiles p, p+R, p+2R, …; the leftovers
      // (the last k mod R tiles) go to the first positions.
      for round in 0..<rounds { mine.append(tiles[round * ranks + position]) }
      if position < extra { mine.append(tiles[rounds * ranks + position]) }
    }
    return mine.sorted()
  }

  /// Tile indices per rank, ascending.
  public var tilesByRank: [[Int]] { (0..<ranks).map { tiles(of: $0) } }

  /// max / mean work − 1 (0 = perfect balance).
  public var imbalance: Double {
    let mean = workByRank.reduce(0, +) / Double(ranks)
    return mean > 0 ? workByRank.max()! / mean - 1 : 0
  }
}
