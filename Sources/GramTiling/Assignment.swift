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
///
/// Within a group, a rank's share is one contiguous run of the group's tiles in band order:
/// bands of `h` tile rows, each band column by column (train tiles before test tiles), with
/// `h ≈ √(share)`. A share of `s` tiles is then a patch of about h rows × s/h columns of the
/// grid, so a rank touches about 2·√s blocks of rows, not all of them, and holds only those
/// samples (`blocks(of:)`; `ntkgram plan` reports the bound `heldRowsEstimate`).
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
    var byCost: [Double: [(index: Int, block: TileBlock, row: Int, col: Int)]] = [:]
    for index in subset {
      let t = plan.tile(index)
      byCost[plan.cost(t), default: []].append((index, t.block, t.tileRow, t.tileCol))
    }
    let sizes = byCost.mapValues { $0.count }
    self.init(groupSizes: sizes, ranks: ranks, tiles: byCost)
  }

  private init(groupSizes: [Double: Int], ranks: Int, tiles: [Double: [(index: Int, block: TileBlock, row: Int, col: Int)]]?) {
    precondition(ranks >= 1, "TileAssignment: ranks must be ≥ 1")
    self.ranks = ranks
    var work = [Double](repeating: 0, count: ranks)
    var count = [Int](repeating: 0, count: ranks)
    var order = Array(0..<ranks)
    var groups: [(Double, [Int], [Int])] = []
    for cost in groupSizes.keys.sorted(by: >) {
      let k = groupSizes[cost]!
      groups.append((cost, tiles?[cost].map { Self.bandOrdered($0, band: Self.bandHeight(tiles: k, ranks: ranks)) } ?? [], order))
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
    TileAssignment(groupSizes: groupSizes(plan: plan), ranks: ranks, tiles: nil)
  }

  /// The number of tiles of each cost, in closed form.
  static func groupSizes(plan: TilePlan) -> [Double: Int] { groupShapes(plan: plan).mapValues(\.tiles) }

  /// Per cost: how many tiles, and in how many tile rows of the train triangle and of the test
  /// block they lie (what bounds a band's height in `heldRowsEstimate`).
  struct GroupShape { var tiles = 0, trainRows = 0, testRows = 0 }

  static func groupShapes(plan: TilePlan) -> [Double: GroupShape] {
    var shapes: [Double: GroupShape] = [:]
    func add(_ cost: Double, _ count: Int, test: Bool) {
      shapes[cost, default: GroupShape()].tiles += count
      if test { shapes[cost]!.testRows += 1 } else { shapes[cost]!.trainRows += 1 }
    }
    // Group sizes in closed form per tile-grid row of the triangle and of the test block.
    let t = plan.trainTiles
    for r in 0..<(plan.includesTrain ? t : 0) {
      let rowsCount = Double(min((r + 1) * plan.tileSize, plan.trainCount) - r * plan.tileSize)
      add(rowsCount * (rowsCount + 1) / 2, 1, test: false)                          // diagonal tile
      if r + 1 < t {
        let lastCols = Double(plan.trainCount - (t - 1) * plan.tileSize)
        let full = t - r - 2                                                        // full-width tiles right of the diagonal
        if full > 0 { add(rowsCount * Double(plan.tileSize), full, test: false) }
        add(rowsCount * lastCols, 1, test: false)                                   // the ragged last column
      }
    }
    for r in 0..<plan.testTiles {
      let rowsCount = Double(min((r + 1) * plan.tileSize, plan.testCount) - r * plan.tileSize)
      let lastCols = Double(plan.trainCount - (t - 1) * plan.tileSize)
      if t > 1 { add(rowsCount * Double(plan.tileSize), t - 1, test: true) }
      add(rowsCount * lastCols, 1, test: true)
    }
    return shapes
  }

  /// The tiles of `rank`, ascending (not available from `summary`).
  public func tiles(of rank: Int) -> [Int] {
    var mine: [Int] = []
    for (_, tiles, order) in groups {
      let k = tiles.count, rounds = k / ranks, extra = k % ranks
      guard let position = order.firstIndex(of: rank) else { continue }
      // The p-th rank in load order takes the p-th contiguous run of the group (in locality
      // order): ⌊k/R⌋ tiles, one more for the first k mod R positions — the same counts as
      // dealing the tiles round by round, so the loads above hold.
      let start = position * rounds + min(position, extra)
      let count = rounds + (position < extra ? 1 : 0)
      mine += tiles[start ..< start + count]
    }
    return mine.sorted()
  }

  /// The band height for a group of `tiles` tiles dealt to `ranks` ranks: √(share).
  static func bandHeight(tiles: Int, ranks: Int) -> Int {
    let share = (tiles + ranks - 1) / max(ranks, 1)
    return max(1, Int(Double(share).squareRoot().rounded()))
  }

  /// Tile indices in band order: train tiles, then test tiles; by band of tile rows; in a
  /// band, by column, then row. Each kind's rows are cut into ⌈rows/band⌉ bands of nearly equal
  /// height (never a thin last band, whose runs would be long strips).
  static func bandOrdered(_ tiles: [(index: Int, block: TileBlock, row: Int, col: Int)], band: Int) -> [Int] {
    var rows = [TileBlock.train: 0, .test: 0]
    for t in tiles { rows[t.block] = max(rows[t.block]!, t.row + 1) }
    func key(_ t: (index: Int, block: TileBlock, row: Int, col: Int)) -> (Int, Int, Int, Int) {
      let total = rows[t.block]!, bands = (total + band - 1) / band
      return (t.block == .train ? 0 : 1, t.row * bands / total, t.col, t.row)
    }
    return tiles.map { (key: key($0), index: $0.index) }.sorted { $0.key < $1.key }.map(\.index)
  }

  /// An upper bound on the samples one rank holds (`blocks(of:)` of its tiles, in rows), in
  /// closed form for any plan. Per cost group of `k` tiles, a rank's run of `s = ⌈k/R⌉` tiles
  /// in band order lies in bands of at most `h` tile rows (h ≈ √s, or the kind's rows if
  /// fewer): it spans at most three bands' rows (two, or the small bands at the triangle's
  /// tip) and `⌈s/h⌉ + h + 2` columns (a band's first columns, by the diagonal, are short),
  /// for each kind of tile (train, test) in the group, and never more than `2s` blocks. The
  /// groups' blocks are added and capped at the whole set; the tests check the bound against
  /// real assignments.
  public static func heldRowsEstimate(plan: TilePlan, ranks: Int) -> Int {
    let all = plan.trainCount + plan.testCount
    guard ranks > 1, plan.count > 0 else { return all }
    var blocks = 0
    for (_, g) in groupShapes(plan: plan) {
      let s = (g.tiles + ranks - 1) / ranks, h = bandHeight(tiles: g.tiles, ranks: ranks)
      var bound = 0
      for rows in [g.trainRows, g.testRows] where rows > 0 {
        let band = min(h, rows), bands = (rows + h - 1) / h
        let height = (rows + bands - 1) / bands
        bound += min(3, bands) * height + (s + band - 1) / band + band + 2
      }
      blocks += min(2 * s, bound)
    }
    return min(all, blocks * plan.tileSize)
  }

  /// The blocks of rows (tile rows of the train set, and of the test set) that `tiles` touch:
  /// what a rank computing them must hold.
  public static func blocks(of tiles: [Int], plan: TilePlan) -> (train: Set<Int>, test: Set<Int>) {
    var train = Set<Int>(), test = Set<Int>()
    for index in tiles {
      let t = plan.tile(index)
      if t.block == .train { train.insert(t.tileRow) } else { test.insert(t.tileRow) }
      train.insert(t.tileCol)
    }
    return (train, test)
  }

  /// Tile indices per rank, ascending.
  public var tilesByRank: [[Int]] { (0..<ranks).map { tiles(of: $0) } }

  /// max / mean work − 1 (0 = perfect balance).
  public var imbalance: Double {
    let mean = workByRank.reduce(0, +) / Double(ranks)
    return mean > 0 ? workByRank.max()! / mean - 1 : 0
  }
}
