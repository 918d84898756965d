import GramMicroKernels
import GramNetwork

/// The precision of the dot products `x·y` a kernel starts from.
///
/// `float64` (the default) gives every entry to ~1e-15 relative. `float32` runs the dot
/// products at twice the speed with rows rounded to float32 and float32 sums (the recursion
/// stays float64); its error, a few 1e-6 relative (3.5e-6 at most on Fashion-MNIST), is
/// measured in `docs/precision.md`.
public enum GramPrecision: String, Sendable, CaseIterable {
  case float64
  case float32
}

/// The arithmetic of the convolutional kernels' pixel-pair recursion (`compute_precision`):
/// float64; float32 in every layer; or mixed, float32 in every stage before the last pooling
/// and float64 from there (the stage the readout reads). Self-pairs, the variance records, the
/// pooled arrays, the sums and the readout are float64 in every mode (docs/precision.md).
public enum ComputePrecision: String, Sendable, CaseIterable {
  case float64
  case float32
  case mixed
}

/// A kernel specification that cannot describe a network.
public struct KernelSpecError: Error, CustomStringConvertible, Equatable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// A fully-connected network: dense layers with an activation between each pair,
/// `Dense₀, act₀, Dense₁, act₁, …, Dense_depth` (the last is the readout). Each dense layer has
/// its own `W_std`, `b_std`, width and parameterization, each hidden layer its own activation;
/// `init(depth:…)` is the uniform network
/// `serial(*[Dense(width, W_std, b_std, parameterization), act] * depth, Dense(1, W_std, b_std, parameterization))`.
///
/// `bStd == nil` means a layer has no bias at all, which differs from `bStd == 0` under the
/// standard parameterization (the bias gradient still contributes 1 to the NTK).
public struct FullyConnected: Sendable, Equatable {
  /// `depth + 1` dense layers; the last one is the readout.
  public var dense: [Affine]
  /// `depth` activations: `activations[l]` follows `dense[l]`.
  public var activations: [Activation]
  /// The precision of the input dot products (the recursion is always float64).
  public var gramPrecision: GramPrecision

  public var depth: Int { activations.count }

  public init(dense: [Affine], activations: [Activation], gramPrecision: GramPrecision = .float64) {
    precondition(dense.count == activations.count + 1, "FullyConnected: one more dense layer than activations")
    self.dense = dense
    self.activations = activations
    self.gramPrecision = gramPrecision
  }

  /// The uniform network of the fully-connected shorthand (`Network.fullyConnected`).
  public init(depth: Int, activation: Activation, wStd: Double, bStd: Double?,
              parameterization: Parameterization = .ntk, width: Int = 512,
              gramPrecision: GramPrecision = .float64) {
    let hidden = Affine(wStd: wStd, bStd: bStd, width: width, parameterization: parameterization)
    var readout = hidden
    readout.width = 1
    self.init(dense: Array(repeating: hidden, count: max(depth, 0)) + [readout],
              activations: Array(repeating: activation, count: max(depth, 0)), gramPrecision: gramPrecision)
  }

  /// The fully-connected kernel of a layer list without convolutions or pooling: `flatten`
  /// layers are dropped (a dense layer sees its input flat anyway), two dense layers in a row
  /// get the identity between them (exactly the same kernel). Throws a `NetworkError` naming
  /// the layer for what this kernel cannot compute.
  public init(network: Network, gramPrecision: GramPrecision = .float64) throws {
    var dense: [Affine] = [], activations: [Activation] = []
    var previous: (position: Int, isActivation: Bool)? = nil
    for (k, layer) in network.layers.enumerated() {
      switch layer {
      case .flatten: continue
      case .dense(let a):
        if let previous, !previous.isActivation { activations.append(.identity) }
        dense.append(a)
        previous = (k, false)
      case .activation(let act):
        guard let p = previous else {
          throw NetworkError(position: k, layerType: layer.typeName, "an activation cannot be the first layer: start with dense")
        }
        guard !p.isActivation else {
          throw NetworkError(position: k, layerType: layer.typeName,
                             "two activations in a row (layers \(p.position) and \(k)) are not implemented: put a dense layer between them")
        }
        activations.append(act)
        previous = (k, true)
      case .conv, .avgPool, .globalAvgPool:
        throw NetworkError(position: k, layerType: layer.typeName,
                           "the fully-connected kernel takes no convolution or pooling (KernelFactory makes the convolutional one)")
      }
    }
    guard let last = previous else {
      throw NetworkError(position: nil, "the layer list has no dense layer, so no readout: end it with a dense layer (width = the outputs per sample, 1 for a kernel); over images, a flatten or global_avg_pool layer first")
    }
    guard !last.isActivation else {
      throw NetworkError(position: last.position, layerType: network.layers[last.position].typeName,
                         "the network must end with a dense readout layer, not an activation")
    }
    for (k, a) in dense.enumerated() { try Self.check(a, position: k) }
    for act in activations {
      if case .leakyReLU(let slope) = act, !slope.isFinite { throw KernelSpecError("leaky_relu slope must be finite (got \(slope))") }
    }
    self.init(dense: dense, activations: activations, gramPrecision: gramPrecision)
  }

  private static func check(_ a: Affine, position: Int) throws {
    guard a.wStd.isFinite, a.wStd >= 0 else { throw KernelSpecError("W_std must be a finite number ≥ 0 (got \(a.wStd))") }
    if let b = a.bStd, !(b.isFinite && b >= 0) {
      throw KernelSpecError("b_std must be a finite number ≥ 0 or none (got \(b))")
    }
    guard a.width >= 1 else { throw KernelSpecError("width must be at least 1 (got \(a.width))") }
  }

  /// Throws a `KernelSpecError` naming the first invalid field.
  public func validate() throws {
    for (k, a) in dense.enumerated() { try Self.check(a, position: k) }
    for act in activations {
      if case .leakyReLU(let slope) = act, !slope.isFinite { throw KernelSpecError("leaky_relu slope must be finite (got \(slope))") }
    }
  }

  /// Dense layer `l` on inputs of `inputDimension` features, as the recursion applies it.
  func denseLayer(_ l: Int, inputDimension: Int) -> DenseLayer {
    let a = dense[l]
    let fanIn = l == 0 ? Double(inputDimension) : Double(dense[l - 1].width)
    return DenseLayer(weightVariance: a.wStd * a.wStd, biasVariance: (a.bStd ?? 0) * (a.bStd ?? 0),
                      standardFanIn: a.parameterization == .standard ? fanIn : nil,
                      standardBiasTerm: a.bStd == nil ? 0 : 1)
  }
}
