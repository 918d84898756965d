/// Which kernel block a tile belongs to.
public enum TileBlock: String, Sendable {
  /// K(train, train): upper-triangle tiles only (the file mirrors them).
  case train
  /// K(test, train): every tile.
  case test
}

/// One tile of the kernel: a rectangle of rows × columns of one block.
public struct Tile: Hashable, Sendable, CustomStringConvertible {
  /// Position in the plan: train tiles first (row-major over the upper triangle), then test tiles.
  public let index: Int
  public let block: TileBlock
  /// Tile-grid coordinates.
  public let tileRow: Int
  public let tileCol: Int
  /// Sample ranges (rows: train or test samples; columns: train samples).
  public let rows: Range<Int>
  public let cols: Range<Int>

  /// Whether this train tile straddles the diagonal (it then holds its own mirror image).
  public var isDiagonal: Bool { block == .train && tileRow == tileCol }
  public var entryCount: Int { rows.count * cols.count }
  public var description: String { "tile \(index) (\(block.rawValue) [\(rows.lowerBound)..<\(rows.upperBound)] × [\(cols.lowerBound)..<\(cols.upperBound)])" }
}

/// The tiles of an `N×N` train kernel (upper triangle) and an `M×N` test kernel — or, for a
/// cross kernel against a stored training kernel (`includesTrain == false`), of the test
/// kernel alone.
///
/// Tiles are computed from their index, never stored, so a plan for `N = 10⁷` costs nothing.
public struct TilePlan: Sendable, Equatable {
  public let trainCount: Int
  public let testCount: Int
  public let tileSize: Int
  /// Whether the train kernel's tiles are part of the plan (they come first).
  public let includesTrain: Bool

  public init(trainCount: Int, testCount: Int, tileSize: Int, includesTrain: Bool = true) {
    precondition(trainCount > 0 && testCount >= 0 && tileSize > 0, "TilePlan: invalid sizes")
    self.trainCount = trainCount
    self.testCount = testCount
    self.tileSize = tileSize
    self.includesTrain = includesTrain
  }

  /// Tiles along the train axis, and along the test axis.
  public var trainTiles: Int { (trainCount + tileSize - 1) / tileSize }
  public var testTiles: Int { (testCount + tileSize - 1) / tileSize }
  /// Upper-triangle train tiles, `t(t+1)/2`.
  public var trainTileCount: Int { includesTrain ? trainTiles * (trainTiles + 1) / 2 : 0 }
  public var testTileCount: Int { testTiles * trainTiles }
  public var count: Int { trainTileCount + testTileCount }

  /// Tile `index` (`0 ..< count`).
  public func tile(_ index: Int) -> Tile {
    precondition(index >= 0 && index < count, "TilePlan: tile index \(index) out of range")
    let t = trainTiles
    if index < trainTileCount {
      // Row r of the upper triangle starts at r·t − r(r−1)/2.
      var r = Int((Double(2 * t + 1) - (Double((2 * t + 1) * (2 * t + 1)) - 8 * Double(index)).squareRoot()) / 2)
      r = max(0, min(r, t - 1))
      while r > 0 && rowStart(r) > index { r -= 1 }
      while r + 1 < t && rowStart(r + 1) <= index { r += 1 }
      let c = r + (index - rowStart(r))
      return Tile(index: index, block: .train, tileRow: r, tileCol: c,
                  rows: range(r, trainCount), cols: range(c, trainCount))
    }
    let k = index - trainTileCount
    let r = k / t, c = k % t
    return Tile(index: index, block: .test, tileRow: r, tileCol: c,
                rows: range(r, testCount), cols: range(c, trainCount))
  }

  private func rowStart(_ r: Int) -> Int { r * trainTiles - r * (r - 1) / 2 }
  private func range(_ k: Int, _ n: Int) -> Range<Int> { k * tileSize ..< min((k + 1) * tileSize, n) }

  /// Work of a tile in kernel entries computed: a diagonal tile computes only its upper half
  /// (plus the diagonal), so it costs about half of a full one.
  public func cost(_ tile: Tile) -> Double {
    if tile.isDiagonal { let n = Double(tile.rows.count); return n * (n + 1) / 2 }
    return Double(tile.entryCount)
  }

  /// Total entries the plan computes.
  public var totalCost: Double {
    var total = 0.0
    for i in 0..<count { total += cost(tile(i)) }
    return total
  }
}

/// The samples of some blocks of `tileSize` rows (tile rows of the grid), packed one block after
/// the other: what a rank holds of a data set when it computes only some tiles. A tile's rows
/// lie in one block, so a tile's sample range maps to one range of packed rows.
public struct RowBlocks: Sendable, Equatable {
  public let tileSize: Int
  /// Samples in the whole set.
  public let total: Int
  /// The blocks held, ascending.
  public let blocks: [Int]
  /// Packed row of each held block's first sample.
  let starts: [Int: Int]
  /// Packed rows.
  public let count: Int

  public init<S: Sequence>(blocks held: S, tileSize: Int, total: Int) where S.Element == Int {
    precondition(tileSize > 0, "RowBlocks: tile size must be positive")
    self.tileSize = tileSize
    self.total = total
    blocks = Set(held).filter { $0 >= 0 && $0 * tileSize < total }.sorted()
    var starts: [Int: Int] = [:]
    var next = 0
    for b in blocks {
      starts[b] = next
      next += min(tileSize, total - b * tileSize)
    }
    self.starts = starts
    count = next
  }

  /// The packed rows of `samples` (within one held block).
  public func packed(_ samples: Range<Int>) -> Range<Int> {
    let b = samples.lowerBound / tileSize
    guard let start = starts[b], samples.isEmpty || (samples.upperBound - 1) / tileSize == b else {
      preconditionFailure("RowBlocks.packed: samples \(samples) are not inside one held block")
    }
    let offset = start + samples.lowerBound - b * tileSize
    return offset ..< offset + samples.count
  }

  /// Whether the block of `sample` is held.
  public func holds(_ sample: Int) -> Bool { starts[sample / tileSize] != nil }

  /// The sample ranges held, in packed order.
  public var sampleRanges: [Range<Int>] { blocks.map { $0 * tileSize ..< min(($0 + 1) * tileSize, total) } }
}

extension TilePlan {
  /// The tiles of `tiles` kept in memory within `budget` bytes of `bytesPerValue`-byte values:
  /// in the list's order, every tile that still fits (a smaller tile may fit after a larger one
  /// did not). What a solve keeps and `ntkgram plan` counts.
  public func kept(_ tiles: [Int], bytesPerValue: Int, budget: Int) -> [Int] {
    var used = 0
    return tiles.filter { index in
      let bytes = tile(index).entryCount * bytesPerValue
      guard used + bytes <= budget else { return false }
      used += bytes
      return true
    }
  }
}
