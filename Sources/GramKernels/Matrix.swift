/// A dense row-major matrix of `Double`: rows are samples, columns are features.
///
/// The kernels read features through this type only; storage formats (NPY, IDX, HDF5, CSV)
/// are converted to it by `GramStorage` loaders before any math runs.
public struct Matrix: Sendable, Equatable {
  public let rows: Int
  public let cols: Int
  /// `rows × cols` values, row `i` at `values[i*cols ..< (i+1)*cols]`.
  public var values: [Double]

  public init(rows: Int, cols: Int, values: [Double]) {
    precondition(rows >= 0 && cols >= 0 && values.count == rows * cols, "Matrix: shape does not match value count")
    self.rows = rows
    self.cols = cols
    self.values = values
  }

  public init(rows: Int, cols: Int, repeating value: Double = 0) {
    self.init(rows: rows, cols: cols, values: Array(repeating: value, count: rows * cols))
  }

  public subscript(row: Int, col: Int) -> Double {
    get { values[row * cols + col] }
    set { values[row * cols + col] = newValue }
  }
}

extension Matrix {
  /// The rows of `ranges`, one range after the other.
  public func rows(_ ranges: [Range<Int>]) -> Matrix {
    var values: [Double] = []
    values.reserveCapacity(ranges.reduce(0) { $0 + $1.count } * cols)
    for r in ranges { values += self.values[r.lowerBound * cols ..< r.upperBound * cols] }
    return Matrix(rows: ranges.reduce(0) { $0 + $1.count }, cols: cols, values: values)
  }
}
