/// A 2-D array of samples read from a dataset file, converted to `Double`.
public struct DenseArray: Sendable, Equatable {
  public let rows: Int
  public let cols: Int
  /// Row-major values.
  public var values: [Double]
  /// The shape of one sample: `[cols]` for flat rows, `[H, W, C]` for images (NHWC, the
  /// values of a row in that order); its product is `cols`.
  public var sampleShape: [Int]

  public init(rows: Int, cols: Int, values: [Double], sampleShape: [Int]? = nil) {
    precondition(values.count == rows * cols, "DenseArray: shape does not match value count")
    self.rows = rows
    self.cols = cols
    self.values = values
    self.sampleShape = sampleShape ?? [cols]
    precondition(self.sampleShape.reduce(1, *) == cols, "DenseArray: sample shape does not match the column count")
  }

  /// The sample shape of an array whose first axis is the sample: `[d]` for 2-D arrays,
  /// `[H, W, 1]` for 3-D (N×H×W, one channel), `[H, W, C]` for 4-D (NHWC), and the flat count
  /// for more axes.
  public static func sampleShape(ofArray shape: [Int]) -> [Int] {
    let rest = Array(shape.dropFirst())
    switch rest.count {
    case 2: return rest + [1]
    case 3: return rest
    default: return [rest.reduce(1, *)]
    }
  }

  /// Throws naming `path`, row and column of the first NaN or infinity.
  public func checkFinite(path: String, firstRow: Int = 0) throws {
    for (index, v) in values.enumerated() where !v.isFinite {
      throw StorageError(path, "\(v.isNaN ? "NaN" : "infinity") at row \(firstRow + index / max(cols, 1)), column \(index % max(cols, 1))")
    }
  }
}
