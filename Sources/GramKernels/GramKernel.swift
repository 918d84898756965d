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
  /// Number of `Double`s of scratch `computeTile` and `computeUpperTile` need for a
  /// `rows × cols` tile of `features`.
  func scratchCount(_ features: Features, rows: Int, cols: Int) -> Int
  /// Computes the kernel between rows `rows` of `a` and rows `cols` of `b` into `out`.
  func computeTile(_ a: Features, rows: Range<Int>, _ b: Features, cols: Range<Int>,
                   into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>)
  /// Computes at least the entries `j ≥ i` of the diagonal tile `rows × rows` of `a` (it may
  /// write entries left of the diagonal too; the caller mirrors the upper part over them).
  func computeUpperTile(_ a: Features, rows: Range<Int>, into out: TileOutput,
                        scratch: UnsafeMutableBufferPointer<Double>)
}

extension GramKernel {
  /// Strips of `upperStrip` rows, each from its first diagonal entry to the right edge.
  public func computeUpperTile(_ a: Features, rows: Range<Int>, into out: TileOutput,
                               scratch: UnsafeMutableBufferPointer<Double>) {
    var r = 0
    while r < rows.count {
      let h = min(upperStrip, rows.count - r)
      let offset = r * out.leadingDimension + r
      computeTile(a, rows: rows.lowerBound + r ..< rows.lowerBound + r + h, a, cols: rows.lowerBound + r ..< rows.upperBound,
                  into: TileOutput(nngp: out.nngp + offset, ntk: out.ntk + offset, leadingDimension: out.leadingDimension),
                  scratch: scratch)
      r += h
    }
  }
}

/// Rows per strip of the default `computeUpperTile`.
public let upperStrip = 32
