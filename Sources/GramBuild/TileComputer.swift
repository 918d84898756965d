import GramKernels
import GramTiling

/// The values of one tile, row-major (`tile.rows.count × tile.cols.count`).
public struct TileValues: Sendable {
  public let tile: Tile
  public var nngp: [Double]
  public var ntk: [Double]

  /// The tile's values by kernel name (`"nngp"`, `"ntk"`).
  public func values(_ kernel: String) -> [Double] { kernel == "ntk" ? ntk : nngp }
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

  public mutating func compute(_ tile: Tile) -> TileValues {
    let m = tile.rows.count, n = tile.cols.count
    var nngp = [Double](repeating: 0, count: m * n)
    var ntk = [Double](repeating: 0, count: m * n)
    let needed = kernel.scratchCount(train, rows: m, cols: n)
    if scratch.count < needed { scratch = [Double](repeating: 0, count: needed) }
    let (kernel, train) = (self.kernel, self.train)
    let rowsFeatures = tile.block == .train ? train : test!
    nngp.withUnsafeMutableBufferPointer { np in
      ntk.withUnsafeMutableBufferPointer { tp in
        scratch.withUnsafeMutableBufferPointer { sp in
          if !tile.isDiagonal {
            kernel.computeTile(rowsFeatures, rows: tile.rows, train, cols: tile.cols,
                               into: TileOutput(nngp: np.baseAddress!, ntk: tp.baseAddress!, leadingDimension: n),
                               scratch: sp)
            return
          }
          kernel.computeUpperTile(rowsFeatures, rows: tile.rows,
                                  into: TileOutput(nngp: np.baseAddress!, ntk: tp.baseAddress!, leadingDimension: n),
                                  scratch: sp)
          for i in 0..<m {
            for j in 0..<i {
              np[i * n + j] = np[j * n + i]
              tp[i * n + j] = tp[j * n + i]
            }
          }
        }
      }
    }
    return TileValues(tile: tile, nngp: nngp, ntk: ntk)
  }
}
