/// A 2-D array of samples read from a dataset file, converted to `Double`.
public struct DenseArray: Sendable, Equatable {
  public let rows: Int
  public let cols: Int
  /// Row-major values.
  public var values: [Double]

  public init(rows: Int, cols: Int, values: [Double]) {
    precondition(values.count == rows * cols, "DenseArray: shape does not match value count")
    self.rows = rows
    self.cols = cols
    self.values = values
  }

  /// Throws naming `path`, row and column of the first NaN or infinity.
  public func checkFinite(path: String) throws {
    for (index, v) in values.enumerated() where !v.isFinite {
      throw StorageError(path, "\(v.isNaN ? "NaN" : "infinity") at row \(index / max(cols, 1)), column \(index % max(cols, 1))")
    }
  }
}
