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
    // Every entry is written below (the kernel, or the mirror), so the outputs start uninitialised.
    var nngp = [Double](unsafeUninitializedCapacity: m * n) { _, count in count = m * n }
    var ntk = [Double](unsafeUninitializedCapacity: m * n) { _, count in count = m * n }
    let needed = kernel.scratchCount(train, rows: m, cols: n)
    if scratch.count < needed { scratch = [Double](repeating: 0, count: needed) }
    let (kernel, train) = (self.kernel, self.train)
    let rowsFeatures = tile.block == .train ? train : test!
    nngp.withUnsafeMutableBufferPointer { np in
      ntk.withUnsafeMutableBufferPointer { tp in
        scratch.withUnsafeMutableBufferPointer { sp in
          let out = TileOutput(nngp: np.baseAddress!, ntk: tp.baseAddress!, leadingDimension: n)
          if tile.isDiagonal {
            kernel.computeUpperTile(rowsFeatures, rows: tile.rows, into: out, scratch: sp)
            mirrorUpper(np.baseAddress!, n: n)
            mirrorUpper(tp.baseAddress!, n: n)
          } else {
            kernel.computeTile(rowsFeatures, rows: tile.rows, train, cols: tile.cols, into: out, scratch: sp)
          }
        }
      }
    }
    return TileValues(tile: tile, nngp: nngp, ntk: ntk)
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
