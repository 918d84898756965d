import GramKernels
import GramTiling

/// The values of one tile, row-major (`tile.rows.count × tile.cols.count`), one block per
/// output of the kernel (`GramKernel.outputNames` order).
public struct TileValues: Sendable {
  public let tile: Tile
  /// Every output's block, one after the other.
  public let block: [Double]
  public let outputs: Int

  /// Output `k`'s values.
  public func values(_ k: Int) -> ArraySlice<Double> {
    let size = block.count / max(outputs, 1)
    return block[k * size ..< (k + 1) * size]
  }
}

/// Computes whole tiles with any `GramKernel`, reusing one scratch buffer.
///
/// A diagonal train tile computes only its upper part (`computeUpperTile`), then mirrors it;
/// the kernel's entries do not depend on the block they are computed in, so the tile is
/// exactly symmetric.
public struct TileComputer<Kernel: GramKernel> {
  public let kernel: Kernel
  public let train: Kernel.Features
  public let test: Kernel.Features?
  private var scratch: [Double] = []

  public init(kernel: Kernel, train: Kernel.Features, test: Kernel.Features?) {
    self.kernel = kernel
    self.train = train
    self.test = test
  }

  public mutating func compute(_ tile: Tile) -> TileValues { compute(tile, rows: tile.rows, cols: tile.cols) }

  /// `tile`, its samples found at rows `rows` (of the train or test features, by the tile's
  /// block) and `cols` (of the train features): the features may hold only some rows
  /// (`RowBlocks`). The values are labelled with `tile`.
  public mutating func compute(_ tile: Tile, rows: Range<Int>, cols: Range<Int>) -> TileValues {
    precondition(rows.count == tile.rows.count && cols.count == tile.cols.count, "TileComputer.compute: ranges do not match the tile")
    let m = tile.rows.count, n = tile.cols.count
    let outputs = kernel.outputNames.count
    // Every entry is written below (the kernel, or the mirror), so the outputs start
    // uninitialised, in one allocation.
    var block = [Double](unsafeUninitializedCapacity: outputs * m * n) { _, count in count = outputs * m * n }
    let needed = kernel.scratchCount(train, rows: m, cols: n)
    if scratch.count < needed { scratch = [Double](repeating: 0, count: needed) }
    let (kernel, train) = (self.kernel, self.train)
    let rowsFeatures = tile.block == .train ? train : test!
    block.withUnsafeMutableBufferPointer { bp in
      scratch.withUnsafeMutableBufferPointer { sp in
        let pointers = (0..<outputs).map { bp.baseAddress! + $0 * m * n }
        let out = TileOutput(values: pointers, leadingDimension: n)
        if tile.isDiagonal {
          kernel.computeUpperTile(rowsFeatures, rows: rows, into: out, scratch: sp)
          for p in pointers { mirrorUpper(p, n: n) }
        } else {
          kernel.computeTile(rowsFeatures, rows: rows, train, cols: cols, into: out, scratch: sp)
        }
      }
    }
    return TileValues(tile: tile, block: block, outputs: outputs)
  }
}

/// Copies the upper triangle of the square row-major `n × n` matrix at `a` onto its lower
/// triangle, in square blocks so that the column reads stay in cache.
func mirrorUpper(_ a: UnsafeMutablePointer<Double>, n: Int) {
  let b = 64
  var i0 = 0
  while i0 < n {
    var j0 = 0
    while j0 <= i0 {
      for i in i0..<min(i0 + b, n) {
        for j in j0..<min(j0 + b, i) { a[i * n + j] = a[j * n + i] }
      }
      j0 += b
    }
    i0 += b
  }
}
