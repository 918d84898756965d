import GramSolver
import GramTiling

/// What one rank of `ntkgram solve` (or `dynamics`) holds, in bytes, and how `--memory-budget`
/// is shared: the preconditioner's peak (built after the tiles are read) and the solver's
/// vectors come first, and the tiles kept in memory get the rest; the other tiles are read from
/// the file on every pass. `ntkgram plan` prints the same figures.
public struct SolveMemory: Sendable {
  /// The process, under mpirun (`BuildPlan.mpiBaselineBytes` measured the same).
  public static let baselineBytes = 48.0 * 1024 * 1024
  /// Tiles this rank would keep if the budget allowed: its share of the stored upper triangle.
  public let share: Double
  /// Tiles kept in memory.
  public let tiles: Double
  /// The preconditioner at its peak (its construction).
  public let preconditioner: Double
  /// Solver state: the systems' blocks and the product's padded copies.
  public let vectors: Double
  public var total: Double { Self.baselineBytes + tiles + preconditioner + vectors }
  /// Bytes left for tiles once the preconditioner and vectors are counted (never negative).
  public let tileBudget: Int
  let n: Int, tile: Int, bytesPerValue: Int, ranks: Int
  /// The kernel file's kernels are tiled (`KernelRegion`): a mapped tile is one range.
  let tiled: Bool

  /// `n` training samples in tiles of `tile`, stored in `bytesPerValue`, over `ranks` ranks,
  /// `columns` right-hand sides (one system per ridge value), within `budget` bytes per rank.
  public init(n: Int, tile: Int, bytesPerValue: Int, ranks: Int, budget: Int, preconditioner kind: SolveSettings.PreconditionerKind,
              rank: Int, columns: Int, systems: Int = 1, tiled: Bool = false) {
    (self.n, self.tile, self.bytesPerValue, self.ranks) = (n, max(1, tile), bytesPerValue, max(1, ranks))
    self.tiled = tiled
    let nn = Double(n), t = Double(max(1, min(tile, n)))
    // Stored upper tiles hold (n² + Σ diagonal tiles' rows²) / 2 values; a rank's share is the
    // mean plus at most one tile (the assignment's imbalance).
    let diagonalTiles = (n + max(tile, 1) - 1) / max(tile, 1)
    let stored = (nn * nn + Double(diagonalTiles) * t * t) / 2
    share = (stored / Double(max(ranks, 1)) + t * t) * Double(bytesPerValue)
    let r = Double(max(1, min(rank, n)))
    switch kind {
    // The basis kept (n·r), the rank's rows of the factor it comes from (n·r / ranks), a block
    // of 100 columns three times over, the m×m products, and one piece of the sum that
    // assembles the basis over the ranks (at most 2²⁴ values); the sketch holds five n×r
    // blocks at its peak.
    case .rpcholesky:
      preconditioner = (nn * r / Double(max(ranks, 1)) + nn * r + 3 * nn * 100 + 4 * r * r + min(Double(1 << 24), nn * r)) * 8
    case .nystrom: preconditioner = (5 * nn * r + 4 * r * r) * 8
    case .jacobi: preconditioner = nn * 8
    case .none: preconditioner = 0
    }
    // Per system: X, R, P, Z, K·P and the targets; the product's padded x and y; the diagonal.
    let c = Double(max(columns, 1))
    vectors = (Double(systems) * 6 * nn * c + 2 * nn * (c + 3) + 2 * nn) * 8
    tileBudget = max(0, budget - Int(min(preconditioner + vectors, Double(Int.max / 2))))
    tiles = min(share, Double(tileBudget))
  }

  /// The kept tiles as the resident set counts them on the rank where they weigh most: a kept
  /// tile is used in place from a mapping of the kernel file, and the pages the kernel maps
  /// around it count too (`MappedFootprint`: around each row of a contiguous kernel, around the
  /// chunk of a tiled one). Exact over the rank's tiles (`TileAssignment`, kept in order while
  /// they fit, as the solve does) up to a million tiles; beyond, the tiles plus one window per
  /// row they touch (contiguous) or the tiles (tiled).
  public func mappedBytes() -> Double {
    guard n > 0 else { return 0 }
    let plan = TilePlan(trainCount: n, testCount: 0, tileSize: min(tile, n))
    guard plan.count <= 1_000_000 else {
      if tiled { return tiles }
      let rows = Double(min(n, TileAssignment.heldRowsEstimate(plan: plan, ranks: ranks)))
      return tiles + (share > 0 ? tiles / share : 0) * rows * Double(MappedFootprint.faultAroundBytes)
    }
    let assignment = TileAssignment(plan: plan, ranks: ranks)
    var most = 0
    for rank in 0..<ranks {
      let kept = plan.kept(assignment.tiles(of: rank), bytesPerValue: bytesPerValue, budget: tileBudget).map(plan.tile)
      most = max(most, tiled ? MappedFootprint.bytes(ofTiles: kept, chunkedBy: tile, columns: n, bytesPerValue: bytesPerValue)
                             : MappedFootprint.bytes(of: kept, columns: n, bytesPerValue: bytesPerValue))
    }
    return Double(most)
  }
}
