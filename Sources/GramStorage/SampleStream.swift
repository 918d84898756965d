import Foundation

/// The samples of a dataset file, read in order a chunk of rows at a time, so that a reader can
/// check, hash and keep a part of a data set much larger than its memory. IDX (plain or gzip),
/// C-order NPY and HDF5 datasets are streamed from the file; CSV and Fortran-order NPY are read
/// whole once (their layout does not allow rows in order) and handed out in chunks.
public final class SampleStream {
  public let path: String
  /// Rows (after the limit) and values per row.
  public let rows: Int
  public let cols: Int
  /// The shape of one sample (`DenseArray.sampleShape`).
  public let sampleShape: [Int]
  /// Whether the file stores integers (IDX pixels).
  public let isInteger: Bool
  /// Labels from a CSV label column.
  public let csvLabels: [Int64]?
  let source: Source
  let limit: Int?

  enum Source {
    case idx
    case npy(offset: Int, width: Int, bigEndian: Bool)
    case hdf5(file: String, dataset: String, shape: [Int])
    case whole(DenseArray)
  }

  /// Opens `path` (`DatasetReader` naming: `file.h5:/dataset`, `.npy`, `.csv`, else IDX),
  /// reading its header only where the format allows.
  public init(_ path: String, limit: Int?, labelColumn: Int?) throws {
    self.path = path
    self.limit = limit
    if let limit, limit < 1 { throw StorageError(path, "limit must be at least 1 (got \(limit))") }
    if labelColumn != nil && !path.lowercased().hasSuffix(".csv") {
      throw StorageError(path, "a label column applies to CSV files only")
    }
    var labels: [Int64]? = nil
    let opened: (Source, Int, Int, [Int], Bool)
    if let (file, dataset) = DatasetReader.hdf5Location(path) {
      let f = try H5File.open(file)
      let name = dataset.hasPrefix("/") ? dataset : "/" + dataset
      let d = try f.dataset(name)
      guard d.shape.count >= 2 else { throw StorageError(path, "expected samples with features (≥ 2 dimensions), got shape \(d.shape)") }
      guard d.scalarType != nil || d.isInteger else { throw StorageError(path, "dataset is not numeric") }
      let rows = min(d.shape[0], limit ?? d.shape[0]), cols = d.shape.dropFirst().reduce(1, *)
      opened = (.hdf5(file: file, dataset: name, shape: d.shape), rows, cols, DenseArray.sampleShape(ofArray: d.shape), d.isInteger)
    } else {
      switch URL(fileURLWithPath: path).pathExtension.lowercased() {
      case "npy":
        let (header, offset) = try NPY.readHeader(path)
        let (rows, cols) = try NPY.matrixShape(header, path: path)
        if header.fortranOrder {
          let a = DatasetReader.limited(try NPY.readMatrix(path), limit)
          opened = (.whole(a), a.rows, a.cols, a.sampleShape, false)
        } else {
          let (width, bigEndian) = try NPY.floatLayout(header.descr, path: path)
          let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
          guard size - offset >= rows * cols * width else {
            throw StorageError(path, "truncated: shape \(header.shape) needs \(rows * cols * width) data bytes, file has \(size - offset)")
          }
          opened = (.npy(offset: offset, width: width, bigEndian: bigEndian), min(rows, limit ?? rows), cols,
                    DenseArray.sampleShape(ofArray: header.shape), false)
        }
      case "csv":
        let (a, l) = try CSV.read(path, limit: limit, labelColumn: labelColumn)
        labels = l
        opened = (.whole(a), a.rows, a.cols, a.sampleShape, false)
      default:
        try DatasetReader.refuseBareHDF5(path)
        let reader = try IDX.Reader(path, limit: limit)
        guard reader.shape.count >= 2 else { throw StorageError(path, "expected samples with features (≥ 2 dimensions), got shape \(reader.shape)") }
        opened = (.idx, reader.shape[0], reader.shape.dropFirst().reduce(1, *), DenseArray.sampleShape(ofArray: reader.shape), reader.isInteger)
      }
    }
    (source, rows, cols, sampleShape, isInteger) = opened
    csvLabels = labels
  }

  /// Calls `body(firstRow, chunk)` for consecutive chunks of at most `chunkRows` rows, every
  /// row once, in order; the values are checked finite (an error names the row and column).
  public func forEachChunk(rows chunkRows: Int, _ body: (Int, DenseArray) throws -> Void) throws {
    let step = max(1, chunkRows)
    var first = 0
    func deliver(_ values: [Double], count: Int) throws {
      let chunk = DenseArray(rows: count, cols: cols, values: values, sampleShape: sampleShape)
      try chunk.checkFinite(path: path, firstRow: first)   // the row in the whole file
      try body(first, chunk)
      first += count
    }
    switch source {
    case .whole(let a):
      while first < rows {
        let n = min(step, rows - first)
        try deliver(Array(a.values[first * cols ..< (first + n) * cols]), count: n)
      }
    case .idx:
      let reader = try IDX.Reader(path, limit: limit)
      while first < rows {
        let n = min(step, rows - first)
        try deliver(try reader.next(n * cols), count: n)
      }
      try reader.finish()
    case .npy(let offset, let width, let bigEndian):
      guard let handle = FileHandle(forReadingAtPath: path) else { throw StorageError(path, "cannot open (permission denied?)") }
      defer { try? handle.close() }
      try handle.seek(toOffset: UInt64(offset))
      while first < rows {
        let n = min(step, rows - first)
        let bytes = n * cols * width
        guard let data = try handle.read(upToCount: bytes), data.count == bytes else {
          throw StorageError(path, "truncated: file ends in row \(first)")
        }
        try deliver(NPY.decodeFloats(data, count: n * cols, width: width, bigEndian: bigEndian), count: n)
      }
    case .hdf5(let file, let name, let shape):
      let d = try H5File.open(file).dataset(name)
      while first < rows {
        let n = min(step, rows - first)
        var values = [Double](repeating: 0, count: n * cols)
        try values.withUnsafeMutableBufferPointer {
          try d.read(into: $0, start: [first] + shape.dropFirst().map { _ in 0 }, count: [n] + shape.dropFirst())
        }
        try deliver(values, count: n)
      }
    }
  }
}
