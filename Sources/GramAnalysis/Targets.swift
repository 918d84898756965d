import Foundation
import GramSolver
import GramStorage

/// The fraction of rows whose largest prediction is the row's label (nil when the counts differ).
public func classificationAccuracy(_ predictions: DenseBlock, classes: [Int64], labels: [Int64]) -> Double? {
  guard labels.count == predictions.rows, predictions.rows > 0, predictions.cols > 0 else { return nil }
  var correct = 0
  for i in 0..<predictions.rows {
    var best = 0
    for j in 1..<predictions.cols where predictions[i, j] > predictions[i, best] { best = j }
    if classes[best] == labels[i] { correct += 1 }
  }
  return Double(correct) / Double(predictions.rows)
}

/// The paths of an analysis of a stored kernel: the kernel file and `extra` inputs; the output
/// file, the metrics and `more` outputs (a checkpoint).
func analysisPaths(kernelFile: String, inputs extra: [(String, String)], out: String, outName: String,
                   metrics: String?, more: [PlannedOutput] = [], force: Bool) -> CommandPaths {
  var outputs = [PlannedOutput(out, outName)]
  if let metrics { outputs.append(PlannedOutput(metrics, "the metrics (--metrics)", kind: .text)) }
  return CommandPaths(inputs: [(kernelFile, "the kernel file")] + extra, outputs: outputs + more, force: force)
}

/// The checks every analysis of a stored kernel makes before any work: a known kernel name and
/// `paths.check()`.
func checkAnalysis(kernelName: String, paths: CommandPaths) throws {
  guard KernelFileLayout.kernelNames.contains(kernelName) else {
    throw AnalysisError("unknown kernel '\(kernelName)' (valid: \(KernelFileLayout.kernelNames.joined(separator: ", ")))")
  }
  try paths.check()
}

/// Writes a float64 dataset of `shape` holding `values` (row-major).
public func writeDoubles(_ f: H5File, _ name: String, _ values: [Double], _ shape: [Int]) throws {
  let d = try f.createDataset(name, shape: shape, type: .float64)
  try values.withUnsafeBufferPointer { try d.write($0, start: shape.map { _ in 0 }, count: shape) }
}

/// How class labels become target columns.
public enum TargetEncoding: String, Sendable, CaseIterable {
  /// 1 for the row's class, 0 elsewhere.
  case onehot
  /// 0.9 for the row's class, −0.1 elsewhere.
  case centered

  var values: (on: Double, off: Double) { self == .onehot ? (1, 0) : (0.9, -0.1) }
}

/// Regression targets or classes, resolved against the kernel file.
public struct Targets {
  let y: DenseBlock
  /// Classification: the class of each target column.
  let classes: [Int64]?
  let testLabels: [Int64]?
  let testTargets: DenseBlock?

  /// The encoded targets of the test set: the given test targets, or the test labels encoded
  /// like the training ones (nil when a test label is not a training class).
  func encodedTestTargets(encoding: TargetEncoding) -> DenseBlock? {
    if let testTargets { return testTargets }
    guard let classes, let testLabels else { return nil }
    return Self.encode(testLabels, classes: classes, encoding: encoding)
  }

  /// One column per class, `encoding`'s values; nil when a label is not one of `classes`.
  public static func encode(_ labels: [Int64], classes: [Int64], encoding: TargetEncoding) -> DenseBlock? {
    let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
    let (on, off) = encoding.values
    var y = DenseBlock(rows: labels.count, cols: classes.count, values: [Double](repeating: off, count: labels.count * classes.count))
    for (i, l) in labels.enumerated() {
      guard let j = index[l] else { return nil }
      y[i, j] = on
    }
    return y
  }

  /// `--targets FILE` (`n` rows), else the kernel file's `/train/labels` encoded. Test targets
  /// need `--targets` and a test kernel (`/test/<kernel>`) with one row per test target row;
  /// targets whose squares overflow float64 are refused (`checkMagnitude`). All before any work.
  static func load(kernelFile: String, kernel: String, targets: String?, testTargets: String?, encoding: TargetEncoding, n: Int) throws -> Targets {
    let f = try H5File.open(kernelFile)
    if let path = targets {
      let y = try readRealMatrix(path)
      guard y.rows == n else { throw StorageError(path, "has \(y.rows) target rows but the kernel has \(n) training samples") }
      try checkMagnitude(y, path: path)
      let test = try testTargets.map(readRealMatrix)
      if let test, let testPath = testTargets {
        if test.cols != y.cols { throw StorageError(testPath, "has \(test.cols) columns, the targets \(y.cols)") }
        let testKernel = KernelFileLayout.test(kernel)
        guard f.exists(testKernel) else {
          throw StorageError(testPath, "test targets for a kernel file without test samples (\(kernelFile) has no \(testKernel)): drop --test-targets or build with --test")
        }
        let m = try f.dataset(testKernel).shape.first ?? 0
        guard test.rows == m else {
          throw StorageError(testPath, "has \(test.rows) test target rows but the kernel has \(m) test samples (\(kernelFile))")
        }
        try checkMagnitude(test, path: testPath)
      }
      return Targets(y: y, classes: nil, testLabels: nil, testTargets: test)
    }
    if testTargets != nil {
      throw AnalysisError("--test-targets needs --targets (without them the targets are the labels, and so are the test targets)")
    }
    guard f.exists(KernelFileLayout.trainLabels) else {
      throw StorageError(kernelFile, "has no \(KernelFileLayout.trainLabels) and no --targets were given")
    }
    let labels = try f.readCheckedLabels(KernelFileLayout.trainLabels)
    guard labels.count == n else { throw StorageError(kernelFile, "has \(labels.count) train labels for \(n) samples") }
    let classes = Array(Set(labels)).sorted()
    let y = encode(labels, classes: classes, encoding: encoding)!
    let testLabels = f.exists(KernelFileLayout.testLabels) ? try f.readCheckedLabels(KernelFileLayout.testLabels) : nil
    return Targets(y: y, classes: classes, testLabels: testLabels, testTargets: nil)
  }

  /// The largest sum of squared targets accepted: the solvers square the targets and products
  /// of the kernel with them (norms, inner products, a Gram matrix of the block), so a margin
  /// of 10^28 below float64's largest value (about 1.8e308) is left for the kernel's scale.
  public static let largestSquaredNorm = 1e280

  /// Refuses targets whose sum of squares is not finite or exceeds `largestSquaredNorm`: every
  /// solver would meet infinities (NaN residuals, a failed eigensolver) far from their cause.
  public static func checkMagnitude(_ y: DenseBlock, path: String) throws {
    // Scaled by the largest magnitude, so that the check itself does not overflow.
    let largest = y.values.reduce(0) { max($0, abs($1)) }
    guard largest > 0 else { return }
    let scaled = y.values.reduce(0) { $0 + ($1 / largest) * ($1 / largest) }
    let log10Squared = 2 * log10(largest) + log10(scaled)
    guard log10Squared <= log10(largestSquaredNorm) else {
      throw StorageError(path, String(format: "targets too large to square in float64 (largest %.3g, sum of squares about 1e%.0f, at most 1e280): scale them down", largest, log10Squared))
    }
  }

  /// Real-valued targets: NPY (1-D or 2-D float), `file.h5:/dataset`, or CSV.
  public static func readRealMatrix(_ path: String) throws -> DenseBlock {
    let a: DenseArray
    if path.lowercased().hasSuffix(".npy") {
      let (header, _) = try NPY.parseHeader(NPY.readFile(path), path: path)
      // A 1-D array is one target column.
      a = try NPY.readMatrix(path, shapeOverride: header.shape.count == 1 ? [header.shape[0], 1] : nil)
    } else {
      a = try DatasetReader.readSamples(path, limit: nil, labelColumn: nil).0
    }
    try a.checkFinite(path: path)
    return DenseBlock(rows: a.rows, cols: a.cols, values: a.values)
  }
}
