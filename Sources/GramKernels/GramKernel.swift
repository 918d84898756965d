/// Where a tile's kernel values go: caller-owned, row-major, with a leading dimension.
///
/// Entry `(i, j)` of the tile (row `i` of the row block, column `j` of the column block) is
/// written to `nngp[i*leadingDimension + j]` and `ntk[i*leadingDimension + j]`.
public struct TileOutput {
  public var nngp: UnsafeMutablePointer<Double>
  public var ntk: UnsafeMutablePointer<Double>
  public var leadingDimension: Int

  public init(nngp: UnsafeMutablePointer<Double>, ntk: UnsafeMutablePointer<Double>, leadingDimension: Int) {
    self.nngp = nngp
    self.ntk = ntk
    self.leadingDimension = leadingDimension
  }
}

/// An infinite-width architecture whose NNGP and NTK the build computes tile by tile.
///
/// The build sees an architecture only through this protocol, so that convolutional kernels
/// (a per-pair covariance over pixels) and empirical kernels can slot in beside the
/// fully-connected one. Implementations do no I/O and no communication, never allocate in
/// `computeTile`, and must give every entry a value that depends only on the two rows
/// (never on the tile shape or position), so that any tiling gives the same bytes.
public protocol GramKernel: Sendable {
  /// Per-dataset precomputation (per-row norms, layer variances, …), made once per dataset.
  associatedtype Features: Sendable

  /// Prepares `data` (rows are samples) for tiles.
  func prepare(_ data: Matrix) -> Features
  /// Number of rows in prepared features.
  func rowCount(_ features: Features) -> Int
  /// Number of `Double`s of scratch `computeTile` needs for a `rows × cols` tile.
  func scratchCount(rows: Int, cols: Int) -> Int
  /// Computes the kernel between rows `rows` of `a` and rows `cols` of `b` into `out`.
  func computeTile(_ a: Features, rows: Range<Int>, _ b: Features, cols: Range<Int>,
                   into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>)
}
