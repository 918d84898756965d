/// Where a tile's kernel values go: caller-owned, row-major, with a leading dimension.
///
/// `values[k]` receives the kernel's output `outputNames[k]`: entry `(i, j)` of the tile (row
/// `i` of the row block, column `j` of the column block) at `values[k][i*leadingDimension + j]`.
public struct TileOutput {
  public var values: [UnsafeMutablePointer<Double>]
  public var leadingDimension: Int

  public init(values: [UnsafeMutablePointer<Double>], leadingDimension: Int) {
    self.values = values
    self.leadingDimension = leadingDimension
  }

  /// The same outputs, starting `offset` entries further.
  public func advanced(by offset: Int) -> TileOutput {
    TileOutput(values: values.map { $0 + offset }, leadingDimension: leadingDimension)
  }
}

/// An architecture whose kernels the build computes tile by tile.
///
/// The build sees an architecture only through this protocol (and `KernelFactory`, which makes
/// one from a layer list), so that convolutional kernels (a per-pair covariance over pixels) and
/// empirical kernels slot in beside the fully-connected one without touching the driver.
/// Implementations do no I/O and no communication, never allocate in `computeTile`, and must
/// give every entry a value that depends only on the two rows (never on the tile shape or
/// position), so that any tiling gives the same bytes.
public protocol GramKernel: Sendable {
  /// Per-dataset precomputation (per-row norms, layer variances, …), made once per dataset.
  associatedtype Features: Sendable

  /// The kernels this architecture produces, in the order of `TileOutput.values` (today
  /// `["ntk", "nngp"]`); they name the datasets `/train/<name>` and `/test/<name>`.
  var outputNames: [String] { get }
  /// Estimated floating-point operations per kernel entry on inputs of `inputFeatures` values:
  /// the tile assignment balances it and `ntkgram plan` turns it into time.
  func costPerEntry(inputFeatures: Int) -> Double
  /// Bytes `prepare` keeps per sample of `inputFeatures` values.
  func preparedBytesPerSample(inputFeatures: Int) -> Int
  /// Number of `Double`s of scratch `computeTile` and `computeUpperTile` need for a
  /// `rows × cols` tile of samples of `inputFeatures` values.
  func scratchCount(inputFeatures: Int, rows: Int, cols: Int) -> Int

  /// Prepares `data` (rows are samples) for tiles.
  func prepare(_ data: Matrix) -> Features
  /// The same, allowed to use `threads` threads (the result must not depend on them).
  func prepare(_ data: Matrix, threads: Int) -> Features
  /// Number of rows in prepared features.
  func rowCount(_ features: Features) -> Int
  /// Number of input values per row of prepared features.
  func inputFeatures(_ features: Features) -> Int
  /// Computes the kernel between rows `rows` of `a` and rows `cols` of `b` into `out`.
  func computeTile(_ a: Features, rows: Range<Int>, _ b: Features, cols: Range<Int>,
                   into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>)
  /// Computes at least the entries `j ≥ i` of the diagonal tile `rows × rows` of `a` (it may
  /// write entries left of the diagonal too; the caller mirrors the upper part over them).
  func computeUpperTile(_ a: Features, rows: Range<Int>, into out: TileOutput,
                        scratch: UnsafeMutableBufferPointer<Double>)
  /// The scalar reference of one entry, every output in `outputNames` order: no vectors, no
  /// tiles, libm functions. `ntkgram verify` recomputes stored entries with it.
  func referenceEntry(_ x: [Double], _ y: [Double]) -> [Double]
}

extension GramKernel {
  public func prepare(_ data: Matrix, threads: Int) -> Features { prepare(data) }

  /// Scratch for a tile of `features`.
  public func scratchCount(_ features: Features, rows: Int, cols: Int) -> Int {
    scratchCount(inputFeatures: inputFeatures(features), rows: rows, cols: cols)
  }

  /// Strips of `upperStrip` rows, each from its first diagonal entry to the right edge.
  public func computeUpperTile(_ a: Features, rows: Range<Int>, into out: TileOutput,
                               scratch: UnsafeMutableBufferPointer<Double>) {
    var r = 0
    while r < rows.count {
      let h = min(upperStrip, rows.count - r)
      computeTile(a, rows: rows.lowerBound + r ..< rows.lowerBound + r + h, a, cols: rows.lowerBound + r ..< rows.upperBound,
                  into: out.advanced(by: r * out.leadingDimension + r), scratch: scratch)
      r += h
    }
  }
}

/// Rows per strip of the default `computeUpperTile`.
public let upperStrip = 32
