import GramKernels
import GramStorage

/// A loaded, validated sample matrix and where it came from.
public struct LoadedData: Sendable {
  public let source: String
  public let matrix: Matrix
  public let labels: [Int64]?
}

/// Reads a sample matrix from `path` and checks it is finite.
func loadSamples(_ path: String) throws -> DenseArray {
  let array = try NPY.readMatrix(path)
  try array.checkFinite(path: path)
  return array
}

extension Matrix {
  init(_ array: DenseArray) { self.init(rows: array.rows, cols: array.cols, values: array.values) }
}
