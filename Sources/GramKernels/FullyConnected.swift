/// How a dense layer's weights are scaled (neural-tangents' `parameterization`).
public enum Parameterization: String, Sendable, CaseIterable {
  /// `f = (W_std/√n)·W·x + b_std·b` with unit-variance parameters.
  case ntk
  /// `f = W·x + b` with `W ~ N(0, W_std²/n)`, `b ~ N(0, b_std²)`: the NTK depends on `width`.
  case standard
}

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

/// A kernel specification that cannot describe a network.
public struct KernelSpecError: Error, CustomStringConvertible, Equatable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// The fully-connected network
/// `serial(*[Dense(width, W_std, b_std, parameterization), act] * depth, Dense(1, W_std, b_std, parameterization))`.
///
/// `bStd == nil` means the dense layers have no bias at all, which differs from `bStd == 0`
/// under the standard parameterization (the bias gradient still contributes 1 to the NTK).
public struct FullyConnected: Sendable, Equatable {
  public var depth: Int
  public var activation: Activation
  public var wStd: Double
  public var bStd: Double?
  public var parameterization: Parameterization
  /// Hidden width: only the standard parameterization's NTK depends on it.
  public var width: Int
  /// The precision of the input dot products (the recursion is always float64).
  public var gramPrecision: GramPrecision

  public init(depth: Int, activation: Activation, wStd: Double, bStd: Double?,
              parameterization: Parameterization = .ntk, width: Int = 512,
              gramPrecision: GramPrecision = .float64) {
    self.gramPrecision = gramPrecision
    self.depth = depth
    self.activation = activation
    self.wStd = wStd
    self.bStd = bStd
    self.parameterization = parameterization
    self.width = width
  }

  /// Throws a `KernelSpecError` naming the first invalid field.
  public func validate() throws {
    guard depth >= 1 else { throw KernelSpecError("depth must be at least 1 (got \(depth))") }
    guard wStd.isFinite, wStd >= 0 else { throw KernelSpecError("W_std must be a finite number ≥ 0 (got \(wStd))") }
    if let b = bStd, !(b.isFinite && b >= 0) {
      throw KernelSpecError("b_std must be a finite number ≥ 0 or none (got \(b))")
    }
    guard width >= 1 else { throw KernelSpecError("width must be at least 1 (got \(width))") }
    if case .leakyReLU(let slope) = activation, !slope.isFinite {
      throw KernelSpecError("leaky_relu slope must be finite (got \(slope))")
    }
  }

  var weightVariance: Double { wStd * wStd }
  var biasVariance: Double { (bStd ?? 0) * (bStd ?? 0) }
  /// The NTK term the bias gradient adds under the standard parameterization.
  var standardBiasTerm: Double { bStd == nil ? 0 : 1 }
}
