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
  /// Regularized ZCA whitening fitted on the training set (after `scale`'s ÷255 of integer
  /// data): x ↦ (x − μ)·W, W = (Σ + ε·tr(Σ)/d·I)^(−1/2) (`ZCA.swift`); ε is `zca_strength`.
  case zca
  case none

  /// The default ZCA strength ε (`zca_strength`).
  public static let defaultZCAStrength = 0.1

  /// Whether it needs statistics of the training set (stored in the kernel file, `/preprocess/*`).
  public var needsTrainingStatistics: Bool { self == .standardize || self == .zca }
}

/// How the training set is augmented before anything else sees it (the test set never is).
public enum Augment: String, Sendable, CaseIterable {
  case none
  /// Every training image's horizontal mirror (the width axis reversed) appended after the
  /// originals, in the same order, with the same labels: N doubles.
  case flip
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
  /// Augmentation of the rows kept (after `limit`): the training split's only.
  public var augment: Augment

  public init(samples: String, labels: String? = nil, limit: Int? = nil, labelColumn: Int? = nil, augment: Augment = .none) {
    self.samples = samples
    self.labels = labels
    self.limit = limit
    self.labelColumn = labelColumn
    self.augment = augment
  }

  /// The image shape `[H, W, C]` that `augment` needs, from `inputShape` (`--input-shape`) or
  /// else the file's own sample shape; nil without augmentation. One line when there is none.
  public func augmentShape(fileShape: [Int], cols: Int, inputShape: [Int]?) throws -> [Int]? {
    guard augment != .none else { return nil }
    let shape = inputShape ?? fileShape
    guard shape.count == 3, shape.reduce(1, *) == cols else {
      throw StorageError(samples, "augment \(augment.rawValue) needs images (samples of shape H×W×C; --input-shape H,W,C for flat rows), its samples have shape \(shape.map(String.init).joined(separator: "×"))")
    }
    return shape
  }
}

/// The rows of `m` (images of `shape` = `[H, W, C]`, NHWC) mirrored horizontally: the width
/// axis reversed, `(h, w, c) ↦ (h, W−1−w, c)`.
public func mirroredHorizontally(_ m: Matrix, shape: [Int]) -> Matrix {
  precondition(shape.count == 3 && shape.reduce(1, *) == m.cols, "mirroredHorizontally: not images of this shape")
  let (h, w, c) = (shape[0], shape[1], shape[2])
  var out = [Double](repeating: 0, count: m.values.count)
  for i in 0..<m.rows {
    for y in 0..<h {
      for x in 0..<w {
        let from = i * m.cols + (y * w + x) * c, to = i * m.cols + (y * w + (w - 1 - x)) * c
        for k in 0..<c { out[to + k] = m.values[from + k] }
      }
    }
  }
  return Matrix(rows: m.rows, cols: m.cols, values: out)
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
/// finite and that labels match the rows, then `augment` (`inputShape`: the shape given to
/// flat rows, `--input-shape`).
public func loadSplit(_ source: DataSource, inputShape: [Int]? = nil) throws -> LoadedSplit {
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
  var samples = Matrix(rows: array.rows, cols: array.cols, values: array.values)
  if let shape = try source.augmentShape(fileShape: array.sampleShape, cols: array.cols, inputShape: inputShape) {
    samples = Matrix(rows: 2 * samples.rows, cols: samples.cols, values: samples.values + mirroredHorizontally(samples, shape: shape).values)
    labels = labels.map { $0 + $0 }
  }
  return LoadedSplit(source: source, samples: samples, labels: labels, isInteger: isInteger, sampleShape: array.sampleShape)
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
/// against the rows, its samples not yet. With `augment = flip`, its rows are the file's rows
/// (after the limit) followed by their mirrors, read twice.
public struct StreamedSplit {
  public let source: DataSource
  public let stream: SampleStream
  public let labels: [Int64]?
  /// The image shape the augmentation mirrors; nil without augmentation.
  let augmentShape: [Int]?
  public var rows: Int { augmentShape == nil ? stream.rows : 2 * stream.rows }
  public var cols: Int { stream.cols }
  public var isInteger: Bool { stream.isInteger }
  public var sampleShape: [Int] { stream.sampleShape }

  public init(_ source: DataSource, inputShape: [Int]? = nil) throws {
    self.source = source
    stream = try SampleStream(source.samples, limit: source.limit, labelColumn: source.labelColumn)
    var labels = stream.csvLabels
    if let path = source.labels {
      labels = try DatasetReader.readLabels(path, limit: source.limit)
      if labels!.count != stream.rows {
        throw StorageError(path, "has \(labels!.count) labels but \(source.samples) has \(stream.rows) rows")
      }
    }
    augmentShape = try source.augmentShape(fileShape: stream.sampleShape, cols: stream.cols, inputShape: inputShape)
    self.labels = augmentShape == nil ? labels : labels.map { $0 + $0 }
  }

  /// Rows per chunk: about 32 MiB of values.
  public var chunkRows: Int { max(1, (32 << 20) / max(8, 8 * cols)) }

  /// Every row, in order, as `Matrix` chunks: `body(firstRow, chunk)` (the mirrored rows, when
  /// augmented, after the file's).
  public func forEachChunk(_ body: (Int, Matrix) throws -> Void) throws {
    try stream.forEachChunk(rows: chunkRows) { first, a in try body(first, Matrix(rows: a.rows, cols: a.cols, values: a.values)) }
    guard let shape = augmentShape else { return }
    let n = stream.rows
    try stream.forEachChunk(rows: chunkRows) { first, a in
      try body(n + first, mirroredHorizontally(Matrix(rows: a.rows, cols: a.cols, values: a.values), shape: shape))
    }
  }
}

/// Statistics of the training set that preprocessing applies to every split, stored in the
/// kernel file (`/preprocess/*`) so that new data is transformed with the training set's
/// statistics, never its own: `standardize`'s per-feature mean and standard deviation (constant
/// features get 1), or `zca`'s mean and d×d whitening matrix (`ZCA.swift`).
public struct PreprocessStatistics: Sendable, Equatable {
  public var mean: [Double]
  /// `standardize`: per feature. Empty for `zca`.
  public var std: [Double]
  /// `zca`: W, d × d row-major (symmetric). Nil for `standardize`.
  public var whitening: [Double]?

  public init(mean: [Double], std: [Double]) {
    self.mean = mean
    self.std = std
    whitening = nil
  }

  public init(mean: [Double], whitening: [Double]) {
    self.mean = mean
    std = []
    self.whitening = whitening
  }

  /// The datasets they are stored as, in order: `/preprocess/mean` and `/preprocess/std`, or
  /// `/preprocess/mean` and `/preprocess/zca` (d × d).
  public var stored: [(name: String, values: [Double], shape: [Int])] {
    let d = mean.count
    if let whitening { return [(KernelFileLayout.preprocessMean, mean, [d]), (KernelFileLayout.preprocessZCA, whitening, [d, d])] }
    return [(KernelFileLayout.preprocessMean, mean, [d]), (KernelFileLayout.preprocessStd, std, [d])]
  }

  /// `preprocess_checksum`: the checksum of the stored datasets (`preprocessChecksum`).
  public var checksum: String { preprocessChecksum(mean: mean, std: whitening ?? std) }

  /// The statistics a kernel file stores for `preprocess` (nil for a preprocessing that needs
  /// none), their shapes checked against `features`. A file storing statistics its
  /// preprocessing does not use, or missing those it does, was modified: one line saying so.
  public static func read(from file: H5File, preprocess: Preprocess, features: Int?) throws -> PreprocessStatistics? {
    let names = [KernelFileLayout.preprocessMean, KernelFileLayout.preprocessStd, KernelFileLayout.preprocessZCA]
    let expected: [String]
    switch preprocess {
    case .standardize: expected = [names[0], names[1]]
    case .zca: expected = [names[0], names[2]]
    default: expected = []
    }
    for name in names where file.exists(name) != expected.contains(name) {
      throw StorageError(file.path, file.exists(name)
        ? "stores \(name) although its preprocess is \(preprocess.rawValue): the file was modified; rebuild it"
        : "uses \(preprocess.rawValue) but stores no training statistics (\(name)): the file was modified; rebuild it")
    }
    guard !expected.isEmpty else { return nil }
    let mean = try file.dataset(names[0]).readAll()
    let d = features ?? mean.count
    let second = try file.dataset(expected[1])
    let shape = preprocess == .zca ? [d, d] : [d]
    guard try file.dataset(names[0]).shape == [d], second.shape == shape else {
      throw StorageError(file.path, "\(names[0]) and \(expected[1]) do not have the shapes of \(d) features: the file was modified; rebuild it")
    }
    return preprocess == .zca ? PreprocessStatistics(mean: mean, whitening: try second.readAll())
                              : PreprocessStatistics(mean: mean, std: try second.readAll())
  }

  /// The statistics `preprocess` needs from `train` (nil when it needs none); `isInteger`:
  /// integer pixels, which `zca` divides by 255 first (as `scale` does).
  public static func of(_ train: Matrix, isInteger: Bool = false, for preprocess: Preprocess,
                        zcaStrength: Double = Preprocess.defaultZCAStrength) throws -> PreprocessStatistics? {
    switch preprocess {
    case .standardize:
      let n = Double(train.rows), d = train.cols
      var mean = [Double](repeating: 0, count: d), std = [Double](repeating: 0, count: d)
      for i in 0..<train.rows { for k in 0..<d { mean[k] += train.values[i * d + k] } }
      for k in 0..<d { mean[k] /= n }
      for i in 0..<train.rows { for k in 0..<d { let c = train.values[i * d + k] - mean[k]; std[k] += c * c } }
      for k in 0..<d { std[k] = (std[k] / n).squareRoot(); if std[k] == 0 { std[k] = 1 } }
      return PreprocessStatistics(mean: mean, std: std)
    case .zca:
      var fit = try ZCAFit(features: train.cols, rows: train.rows, strength: zcaStrength)
      let scaled = preprocessed(train, isInteger: isInteger, .scale, statistics: nil)
      fit.addToMean(scaled)
      fit.finishMean()
      fit.addToCovariance(scaled)
      return try fit.finish()
    default:
      return nil
    }
  }
}

extension PreprocessStatistics {
  /// The same statistics from a streamed training split (two passes, in row order: the same
  /// sums, so the same bits, as `of(_:isInteger:for:zcaStrength:)` on the whole matrix).
  public static func of(_ train: StreamedSplit, for preprocess: Preprocess,
                        zcaStrength: Double = Preprocess.defaultZCAStrength) throws -> PreprocessStatistics? {
    switch preprocess {
    case .standardize:
      let n = Double(train.rows), d = train.cols
      var mean = [Double](repeating: 0, count: d), std = [Double](repeating: 0, count: d)
      try train.forEachChunk { _, m in for i in 0..<m.rows { for k in 0..<d { mean[k] += m.values[i * d + k] } } }
      for k in 0..<d { mean[k] /= n }
      try train.forEachChunk { _, m in for i in 0..<m.rows { for k in 0..<d { let c = m.values[i * d + k] - mean[k]; std[k] += c * c } } }
      for k in 0..<d { std[k] = (std[k] / n).squareRoot(); if std[k] == 0 { std[k] = 1 } }
      return PreprocessStatistics(mean: mean, std: std)
    case .zca:
      var fit = try ZCAFit(features: train.cols, rows: train.rows, strength: zcaStrength, source: train.source.samples)
      let isInteger = train.isInteger
      try train.forEachChunk { _, m in fit.addToMean(preprocessed(m, isInteger: isInteger, .scale, statistics: nil)) }
      fit.finishMean()
      try train.forEachChunk { _, m in fit.addToCovariance(preprocessed(m, isInteger: isInteger, .scale, statistics: nil)) }
      return try fit.finish()
    default:
      return nil
    }
  }
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
    guard let statistics, statistics.mean.count == m.cols, statistics.std.count == m.cols else {
      preconditionFailure("standardize needs the training statistics of \(m.cols) features")
    }
    let d = m.cols
    var v = m.values
    for i in 0..<m.rows { for k in 0..<d { v[i * d + k] = (v[i * d + k] - statistics.mean[k]) / statistics.std[k] } }
    return Matrix(rows: m.rows, cols: d, values: v)
  case .zca:
    guard let statistics, let w = statistics.whitening, statistics.mean.count == m.cols else {
      preconditionFailure("zca needs the training set's whitening of \(m.cols) features")
    }
    return zcaWhitened(preprocessed(m, isInteger: isInteger, .scale, statistics: nil), mean: statistics.mean, whitening: w)
  }
}
