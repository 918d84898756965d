/// Element-wise nonlinearities whose infinite-width kernels have closed forms.
///
/// Conventions follow neural-tangents' `stax` layers exactly (`Relu`, `LeakyRelu`, `Abs`,
/// `ABRelu`, `Erf`, `Identity`): the factor 2 of He initialisation lives in `W_std`, not here.
public enum Activation: Sendable, Equatable, CustomStringConvertible {
  case relu
  /// `max(x, 0) + slope·min(x, 0)`.
  case leakyReLU(slope: Double)
  case abs
  /// `erf(x)` (neural-tangents `Erf(a=1, b=1, c=0)`).
  case erf
  case identity

  /// Names accepted on the command line and in job files.
  public static let validNames = ["relu", "erf", "leaky_relu", "abs", "identity"]

  /// Parses a name from `validNames`; `leaky_relu` takes its negative slope from `leakySlope`.
  public init?(name: String, leakySlope: Double = 0.01) {
    switch name {
    case "relu": self = .relu
    case "leaky_relu": self = .leakyReLU(slope: leakySlope)
    case "abs": self = .abs
    case "erf": self = .erf
    case "identity": self = .identity
    default: return nil
    }
  }

  public var name: String {
    switch self {
    case .relu: "relu"
    case .leakyReLU: "leaky_relu"
    case .abs: "abs"
    case .erf: "erf"
    case .identity: "identity"
    }
  }

  public var description: String {
    if case .leakyReLU(let slope) = self { return "leaky_relu(\(slope))" }
    return name
  }
}
