import Foundation
import GramSolver
import GramStorage

/// The fraction of rows whose largest prediction is the row's label (nil when the counts differ).
func classificationAccuracy(_ predictions: DenseBlock, classes: [Int64], labels: [Int64]) -> Double? {
  guard labels.count == predictions.rows, predictions.rows > 0, predictions.cols > 0 else { return nil }
  var correct = 0
  for i in 0..<predictions.rows {
    var best = 0
    for j in 1..<predictions.cols where predictions[i, j] > predictions[i, best] { best = j }
    if classes[best] == labels[i] { correct += 1 }
  }
  return Double(correct) / Double(predictions.rows)
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
struct Targets {
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
    let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
    let (on, off) = encoding.values
    var t = DenseBlock(rows: testLabels.count, cols: classes.count, values: [Double](repeating: off, count: testLabels.count * classes.count))
    for (i, l) in testLabels.enumerated() {
      guard let j = index[l] else { return nil }
      t[i, j] = on
    }
    return t
  }

  /// `--targets FILE` (`n` rows), else the kernel file's `/train/labels` encoded.
  static func load(kernelFile: String, targets: String?, testTargets: String?, encoding: TargetEncoding, n: Int) throws -> Targets {
    let f = try H5File.open(kernelFile)
    if let path = targets {
      let y = try readRealMatrix(path)
      guard y.rows == n else { throw StorageError(path, "has \(y.rows) target rows but the kernel has \(n) training samples") }
      let test = try testTargets.map(readRealMatrix)
      if let test, test.cols != y.cols { throw StorageError(testTargets!, "has \(test.cols) columns, the targets \(y.cols)") }
      return Targets(y: y, classes: nil, testLabels: nil, testTargets: test)
    }
    guard f.exists(KernelFileLayout.trainLabels) else {
      throw StorageError(kernelFile, "has no \(KernelFileLayout.trainLabels) and no --targets were given")
    }
    let labels = try f.dataset(KernelFileLayout.trainLabels).readAllInt64()
    guard labels.count == n else { throw StorageError(kernelFile, "has \(labels.count) train labels for \(n) samples") }
    let classes = Array(Set(labels)).sorted()
    let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
    let (on, off) = encoding.values
    var y = DenseBlock(rows: n, cols: classes.count, values: [Double](repeating: off, count: n * classes.count))
    for (i, l) in labels.enumerated() { y[i, index[l]!] = on }
    let testLabels = f.exists(KernelFileLayout.testLabels) ? try f.dataset(KernelFileLayout.testLabels).readAllInt64() : nil
    return Targets(y: y, classes: classes, testLabels: testLabels, testTargets: nil)
  }

  /// Real-valued targets: NPY (1-D or 2-D float), `file.h5:/dataset`, or CSV.
  static func readRealMatrix(_ path: String) throws -> DenseBlock {
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
