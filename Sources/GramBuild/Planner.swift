import GramStorage
import GramTiling

/// What a build will cost, computed without computing anything: tiles, work per rank,
/// memory per rank, disk, and wall time from a measured throughput.
public struct BuildPlan: Sendable {
  public let trainCount: Int
  public let testCount: Int
  public let features: Int
  public let tileSize: Int
  public let ranks: Int
  public let depth: Int
  public let bytesPerValue: Int
  public let tiles: Int
  public let assignment: TileAssignment
  /// Kernel entries per second of one rank.
  public let entriesPerSecondPerRank: Double

  public init(trainCount: Int, testCount: Int, features: Int, tileSize: Int, ranks: Int, depth: Int,
              dtype: ScalarType, entriesPerSecondPerRank: Double) {
    self.trainCount = trainCount
    self.testCount = testCount
    self.features = features
    self.tileSize = tileSize
    self.ranks = ranks
    self.depth = depth
    bytesPerValue = dtype.byteCount
    let plan = TilePlan(trainCount: trainCount, testCount: testCount, tileSize: tileSize)
    tiles = plan.count
    assignment = TileAssignment.summary(plan: plan, ranks: ranks)
    self.entriesPerSecondPerRank = entriesPerSecondPerRank
  }

  public var totalEntries: Double { assignment.workByRank.reduce(0, +) }

  /// Per rank: the samples (as read, and padded for the kernels), per-layer variances, one
  /// tile's values in float64 and in storage precision, and the Gram scratch.
  public var memoryPerRank: Double {
    let rows = Double(trainCount + testCount)
    let padded = Double((features + 3) / 4 * 4)
    let t = Double(tileSize)
    return rows * Double(features) * 8 * 2 + rows * padded * 8 + rows * Double(depth + 3) * 8
      + t * t * 8 * 2 + t * t * Double(bytesPerValue) * 2 + (t * t + Double(depth) * t) * 8
  }

  /// Checkpoints: every computed tile (upper triangle + test), both kernels.
  public var checkpointBytes: Double { totalEntries * 2 * Double(bytesPerValue) + Double(tiles) * 12_000 }
  /// The kernel file: the full symmetric train kernels and the cross kernels.
  public var kernelFileBytes: Double {
    (Double(trainCount) * Double(trainCount) + Double(testCount) * Double(trainCount)) * 2 * Double(bytesPerValue)
  }
  public var wallSeconds: Double { (assignment.workByRank.max() ?? 0) / entriesPerSecondPerRank }
}
