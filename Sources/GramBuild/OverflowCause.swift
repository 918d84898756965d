import Foundation
import GramKernels
import GramNetwork
import GramStorage

/// Why the kernel of a sample with itself is out of range (not finite, or beyond float32): the
/// data, or the network's parameters.
///
/// The sample scaled to unit norm tells them apart: when its kernel is out of range too, no
/// scaling of the data helps, and the parameters are named — a weights file (`--params`) with
/// the dataset holding the largest values, or the layer whose `W_std` / `b_std` is the larger
/// factor.
enum OverflowCause: Equatable {
  case data
  /// The weights read from `path` (`--params`): `dataset` holds values up to `largest`.
  case weightsFile(path: String, dataset: String, position: Int, largest: Double)
  /// A layer's hyperparameter (`W_std` or `b_std`) of `value`.
  case hyperparameter(position: Int, type: String, name: String, value: Double)

  /// The cause for `row` (the sample whose self-pair is out of range); `outOfRange` tells a
  /// kernel value that is.
  static func find(kernel: some GramKernel, row: [Double], spec: KernelSpec, outOfRange: (Double) -> Bool) -> OverflowCause {
    guard kernel.referenceEntry(unitNorm(row), unitNorm(row)).contains(where: outOfRange) else { return .data }
    if let empirical = spec.empirical, let path = empirical.source,
       let cause = weightsFile(path: path, parameters: empirical.parameters, network: spec.network) {
      return cause
    }
    return largestHyperparameter(spec.network) ?? .data
  }

  /// `x / ‖x‖` computed without overflow (scaled by its largest magnitude first); zeros stay zeros.
  static func unitNorm(_ x: [Double]) -> [Double] {
    let largest = x.reduce(0) { max($0, abs($1)) }
    guard largest > 0, largest.isFinite else { return x.map { _ in 0 } }
    let y = x.map { $0 / largest }
    let norm = y.reduce(0) { $0 + $1 * $1 }.squareRoot()
    return y.map { $0 / norm }
  }

  /// The dense layer whose weights contribute the largest factor (`c·max|W|` or `β·max|b|`,
  /// with c and β the layer's scale of W and b): the file when its values are the larger part
  /// of that factor, else the layer's `W_std` / `b_std`.
  static func weightsFile(path: String, parameters: NetworkParameters, network: Network) -> OverflowCause? {
    var best: (factor: Double, cause: OverflowCause)? = nil
    for p in parameters.dense {
      guard p.position < network.layers.count, case .dense(let a) = network.layers[p.position] else { continue }
      let maxW = p.W.reduce(0) { max($0, abs($1)) }, maxB = p.b?.reduce(0) { max($0, abs($1)) } ?? 0
      let ntk = a.parameterization == .ntk
      let c = ntk ? a.wStd / Double(max(p.inputs, 1)).squareRoot() : 1, beta = ntk ? a.bStd ?? 0 : 1
      let (factor, stored, scale, name, value) = c * maxW >= beta * maxB
        ? (c * maxW, maxW, c, "W", a.wStd) : (beta * maxB, maxB, beta, "b", a.bStd ?? 0)
      let cause: OverflowCause = stored >= scale
        ? .weightsFile(path: path, dataset: "\(ParametersFile.group)/\(p.position)/\(name)", position: p.position, largest: stored)
        : .hyperparameter(position: p.position, type: "dense", name: name + "_std", value: value)
      if best == nil || factor > best!.factor { best = (factor, cause) }
    }
    return best?.cause
  }

  /// The largest `W_std` or `b_std` of the network's dense and conv layers.
  static func largestHyperparameter(_ network: Network) -> OverflowCause? {
    var best: OverflowCause? = nil, largest = -1.0
    for (k, layer) in network.layers.enumerated() {
      let affine: Affine
      switch layer {
      case .dense(let a), .conv(let a, _): affine = a
      default: continue
      }
      for (name, value) in [("W_std", affine.wStd), ("b_std", affine.bStd ?? 0)] where value > largest {
        largest = value
        best = .hyperparameter(position: k, type: layer.typeName, name: name, value: value)
      }
    }
    return best
  }

  /// The error for the self-pair of `row` of `source` whose `output` is `problem` ("infinite",
  /// "NaN", "1e+40, beyond float32's range"); `dataRemedy` ends it when the data is the cause,
  /// `parametersRemedy` when the parameters are.
  func error(output: String, row: Int, source: String, problem: String, dataRemedy: String, parametersRemedy: String) -> Error {
    let pair = "the \(output) of row \(row) of \(source) (its largest sample) with itself is \(problem), and so is a unit-norm sample's"
    switch self {
    case .data:
      return BuildError("\(source): the \(output) of row \(row) with itself is \(problem): \(dataRemedy)")
    case .weightsFile(let path, let dataset, let position, let largest):
      return StorageError(path, "the network's weights (--params) are too large: \(dataset) (kernel.layers[\(position)], dense) holds values up to \(String(format: "%.3g", largest)); \(pair): \(parametersRemedy)")
    case .hyperparameter(let position, let type, let name, let value):
      return BuildError("\(source): the network's parameters are too large: kernel.layers[\(position)] (\(type)) has \(name) \(value); \(pair): \(parametersRemedy)")
    }
  }
}
