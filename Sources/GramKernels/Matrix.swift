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

  /// Rows `range` as a new matrix.
  public func rows(_ range: Range<Int>) -> Matrix {
    Matrix(rows: range.count, cols: cols, values: Array(values[range.lowerBound * cols ..< range.upperBound * cols]))
  }

  /// This matrix with `other`'s rows appended below.
  public func stacked(on other: Matrix) -> Matrix {
    precondition(cols == other.cols, "Matrix.stacked: column counts differ")
    return Matrix(rows: rows + other.rows, cols: cols, values: values + other.values)
  }
}
