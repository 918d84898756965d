/// A static assignment of a plan's tiles to ranks.
///
/// Longest-processing-time greedy: tiles in decreasing cost (ties by index) each go to the
/// rank with the least work so far (ties by rank). Deterministic, so every rank computes the
/// same assignment without talking to the others; within 4/3 of the optimum and, for the
/// near-uniform costs of a tile plan, within one tile of perfect balance. Ranks beyond the
/// tile count get nothing.
public struct TileAssignment: Sendable {
  public let ranks: Int
  /// Tile indices per rank, ascending.
  public let tilesByRank: [[Int]]
  /// Work per rank (entries).
  public let workByRank: [Double]

  /// Assigns every tile of `plan`.
  public init(plan: TilePlan, ranks: Int) {
    self.init(plan: plan, tiles: Array(0..<plan.count), ranks: ranks)
  }

  /// Assigns the tiles `tiles` of `plan` (those a resumed build still has to compute).
  public init(plan: TilePlan, tiles subset: [Int], ranks: Int) {
    precondition(ranks >= 1, "TileAssignment: ranks must be ≥ 1")
    self.ranks = ranks
    let order = subset.map { ($0, plan.cost(plan.tile($0))) }
      .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
    var heap = MinHeap(count: ranks)
    var tiles = [[Int]](repeating: [], count: ranks)
    for (index, cost) in order {
      let rank = heap.popMin()
      tiles[rank.rank].append(index)
      heap.push((rank.work + cost, rank.rank))
    }
    tilesByRank = tiles.map { $0.sorted() }
    var work = [Double](repeating: 0, count: ranks)
    for (r, list) in tilesByRank.enumerated() { for i in list { work[r] += plan.cost(plan.tile(i)) } }
    workByRank = work
  }

  /// max / mean work − 1 (0 = perfect balance).
  public var imbalance: Double {
    let mean = workByRank.reduce(0, +) / Double(ranks)
    return mean > 0 ? workByRank.max()! / mean - 1 : 0
  }
}

/// A binary min-heap of `(work, rank)`, ordered by work then rank.
struct MinHeap {
  private var items: [(work: Double, rank: Int)]

  init(count: Int) { items = (0..<count).map { (0, $0) } }

  private func less(_ a: Int, _ b: Int) -> Bool {
    items[a].work != items[b].work ? items[a].work < items[b].work : items[a].rank < items[b].rank
  }

  mutating func popMin() -> (work: Double, rank: Int) {
    let top = items[0]
    items[0] = items[items.count - 1]
    items.removeLast()
    var i = 0
    while true {
      let l = 2 * i + 1, r = l + 1
      var m = i
      if l < items.count && less(l, m) { m = l }
      if r < items.count && less(r, m) { m = r }
      if m == i { break }
      items.swapAt(i, m)
      i = m
    }
    return top
  }

  mutating func push(_ item: (Double, Int)) {
    items.append(item)
    var i = items.count - 1
    while i > 0 && less(i, (i - 1) / 2) {
      items.swapAt(i, (i - 1) / 2)
      i = (i - 1) / 2
    }
  }
}
