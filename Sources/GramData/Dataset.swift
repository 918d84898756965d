import GramKernels
import GramStorage

/// How raw samples are transformed before the kernel sees them.
public enum Preprocess: String, Sendable, CaseIterable {
  /// Integer data (pixels) divided by 255; float data unchanged.
  case scale
  /// Every feature shifted and scaled to zero mean, unit variance with the train statistics
  /// (applied to the test set too); constant features are only centred.
  case standardize
  /// Every row scaled to unit Euclidean norm (zero rows stay zero).
  case unitNorm = "unit_norm"
  case none
}

/// Where one split's samples (and optional labels) come from.
public struct DataSource: Sendable, Equatable {
  /// A `.npy` file, an IDX file (plain or `.gz`), `file.h5:/dataset`, or a `.csv` file.
  public var samples: String
  /// Labels file; nil for none. For CSV samples, see `labelColumn`.
  public var labels: String?
  /// Keep only the first `limit` rows.
  public var limit: Int?
  /// CSV only: the (0-based) column holding labels, removed from the features.
  public var labelColumn: Int?

  public init(samples: String, labels: String? = nil, limit: Int? = nil, labelColumn: Int? = nil) {
    self.samples = samples
    self.labels = labels
    self.limit = limit
    self.labelColumn = labelColumn
  }
}

/// A split loaded from disk, validated and preprocessed.
public struct LoadedSplit: Sendable {
  public let source: DataSource
  public let samples: Matrix
  public let labels: [Int64]?
  /// Whether the file stores integers (IDX pixels), which `scale` divides by 255.
  public let isInteger: Bool
  /// The shape of one sample as the file gives it: `[d]`, or `[H, W, C]` for images.
  public let sampleShape: [Int]

  /// The same split with its samples dropped (labels, source and shape kept).
  public func withoutSamples() -> LoadedSplit {
    LoadedSplit(source: source, samples: Matrix(rows: 0, cols: samples.cols), labels: labels, isInteger: isInteger,
                sampleShape: sampleShape)
  }
}

/// Loads a split: reads the samples and labels, applies `limit`, checks the values are
/// finite and that labels match the rows.
public func loadSplit(_ source: DataSource) throws -> LoadedSplit {
  if let limit = source.limit, limit < 1 { throw StorageError(source.samples, "limit must be at least 1 (got \(limit))") }
  let (array, isInteger, csvLabels) = try DatasetReader.readSamples(source.samples, limit: source.limit, labelColumn: source.labelColumn)
  try array.checkFinite(path: source.samples)
  var labels = csvLabels
  if let path = source.labels {
    labels = try DatasetReader.readLabels(path, limit: source.limit)
    if labels!.count != array.rows {
      throw StorageError(path, "has \(labels!.count) labels but \(source.samples) has \(array.rows) rows")
    }
  }
  return LoadedSplit(source: source, samples: Matrix(rows: array.rows, cols: array.cols, values: array.values),
                     labels: labels, isInteger: isInteger, sampleShape: array.sampleShape)
}

extension LoadedSplit {
  /// A split whose samples are not held (streamed: `StreamedSplit`), for what needs its source,
  /// labels and shape only.
  public init(unheld split: StreamedSplit) {
    self.init(source: split.source, samples: Matrix(rows: 0, cols: split.cols), labels: split.labels,
              isInteger: split.isInteger, sampleShape: split.sampleShape)
  }
}

/// A split opened for reading in chunks of rows (`SampleStream`): its labels read and checked
/// against the rows, its samples not yet.
public struct StreamedSplit {
  public let source: DataSource
  public let stream: SampleStream
  public let labels: [Int64]?
  public var rows: Int { stream.rows }
  public var cols: Int { stream.cols }
  public var isInteger: Bool { stream.isInteger }
  public var sampleShape: [Int] { stream.sampleShape }

  public init(_ source: DataSource) throws {
    self.source = source
    stream = try SampleStream(source.samples, limit: source.limit, labelColumn: source.labelColumn)
    var labels = stream.csvLabels
    if let path = source.labels {
      labels = try DatasetReader.readLabels(path, limit: source.limit)
      if labels!.count != stream.rows {
        throw StorageError(path, "has \(labels!.count) labels but \(source.samples) has \(stream.rows) rows")
      }
    }
    self.labels = labels
  }

  /// Rows per chunk: about 32 MiB of values.
  public var chunkRows: Int { max(1, (32 << 20) / max(8, 8 * cols)) }

  /// Every row, in order, as `Matrix` chunks: `body(firstRow, chunk)`.
  public func forEachChunk(_ body: (Int, Matrix) throws -> Void) throws {
    try stream.forEachChunk(rows: chunkRows) { first, a in try body(first, Matrix(rows: a.rows, cols: a.cols, values: a.values)) }
  }
}

/// Statistics of the training set that preprocessing applies to every split: the per-feature
/// mean and standard deviation of `standardize` (constant features get 1). Stored in the kernel
/// file (`/preprocess/mean`, `/preprocess/std`) so that new data is standardised with the
/// training set's statistics, never its own.
public struct PreprocessStatistics: Sendable, Equatable {
  public var mean: [Double]
  public var std: [Double]

  public init(mean: [Double], std: [Double]) {
    self.mean = mean
    self.std = std
  }

  /// The statistics `preprocess` needs from `train` (nil when it needs none).
  public static func of(_ train: Matrix, for preprocess: Preprocess) -> PreprocessStatistics? {
    guard preprocess == .standardize else { return nil }
    let n = Double(train.rows), d = train.cols
    var mean = [Double](repeating: 0, count: d), std = [Double](repeating: 0, count: d)
    for i in 0..<train.rows { for k in 0..<d { mean[k] += train.values[i * d + k] } }
    for k in 0..<d { mean[k] /= n }
    for i in 0..<train.rows { for k in 0..<d { let c = train.values[i * d + k] - mean[k]; std[k] += c * c } }
    for k in 0..<d { std[k] = (std[k] / n).squareRoot(); if std[k] == 0 { std[k] = 1 } }
    return PreprocessStatistics(mean: mean, std: std)
  }
}

extension PreprocessStatistics {
  /// The same statistics from a streamed training split (two passes for `standardize`, in row
  /// order: the same sums, so the same bits, as `of(_:for:)` on the whole matrix).
  public static func of(_ train: StreamedSplit, for preprocess: Preprocess) throws -> PreprocessStatistics? {
    guard preprocess == .standardize else { return nil }
    let n = Double(train.rows), d = train.cols
    var mean = [Double](repeating: 0, count: d), std = [Double](repeating: 0, count: d)
    try train.forEachChunk { _, m in for i in 0..<m.rows { for k in 0..<d { mean[k] += m.values[i * d + k] } } }
    for k in 0..<d { mean[k] /= n }
    try train.forEachChunk { _, m in for i in 0..<m.rows { for k in 0..<d { let c = m.values[i * d + k] - mean[k]; std[k] += c * c } } }
    for k in 0..<d { std[k] = (std[k] / n).squareRoot(); if std[k] == 0 { std[k] = 1 } }
    return PreprocessStatistics(mean: mean, std: std)
  }
}

/// Applies `preprocess` to the train split and, with the train statistics, to the test split.
public func preprocessSplits(_ train: Matrix, _ test: Matrix?, trainIsInteger: Bool, testIsInteger: Bool,
                             _ preprocess: Preprocess) -> (Matrix, Matrix?) {
  let statistics = PreprocessStatistics.of(train, for: preprocess)
  return (preprocessed(train, isInteger: trainIsInteger, preprocess, statistics: statistics),
          test.map { preprocessed($0, isInteger: testIsInteger, preprocess, statistics: statistics) })
}

/// Applies `preprocess` to one split, with the training set's `statistics` where it needs them.
public func preprocessed(_ m: Matrix, isInteger: Bool, _ preprocess: Preprocess, statistics: PreprocessStatistics?) -> Matrix {
  switch preprocess {
  case .none:
    return m
  case .scale:
    return isInteger ? Matrix(rows: m.rows, cols: m.cols, values: m.values.map { $0 / 255 }) : m
  case .unitNorm:
    var v = m.values
    for i in 0..<m.rows {
      var s = 0.0
      for k in 0..<m.cols { s += v[i * m.cols + k] * v[i * m.cols + k] }
      let norm = s.squareRoot()
      if norm > 0 { for k in 0..<m.cols { v[i * m.cols + k] /= norm } }
    }
    return Matrix(rows: m.rows, cols: m.cols, values: v)
  case .standardize:
    guard let statistics, statistics.mean.count == m.cols else {
      preconditionFailure("standardize needs the training statistics of \(m.cols) features")
    }
    let d = m.cols
    var v = m.values
    for i in 0..<m.rows { for k in 0..<d { v[i * d + k] = (v[i * d + k] - statistics.mean[k]) / statistics.std[k] } }
    return Matrix(rows: m.rows, cols: d, values: v)
  }
}
