import GramNetwork

extension Activation {
  /// The kernel family this activation belongs to.
  var family: Family {
    switch self {
    case .relu: .abReLU(a: 0, b: 1)
    case .leakyReLU(let slope): .abReLU(a: slope, b: 1)
    case .abs: .abReLU(a: -1, b: 1)
    case .erf: .erf
    case .identity: .identity
    }
  }

  /// `ABReLU(a, b)(x) = a·min(x, 0) + b·max(x, 0)` covers ReLU, leaky ReLU and |x|.
  enum Family {
    case abReLU(a: Double, b: Double)
    case erf
    case identity
  }
}
