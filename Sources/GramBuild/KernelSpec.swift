import GramKernels
import GramStorage

/// The version written into every kernel file.
public let toolVersion = "0.1.0"

extension FullyConnected {
  /// The spec as root attributes of the kernel file (and of every checkpoint tile).
  public var attributes: [(String, AttributeValue)] {
    var a: [(String, AttributeValue)] = [
      ("architecture", .string("fully_connected")),
      ("depth", .int(Int64(depth))),
      ("activation", .string(activation.name)),
    ]
    if case .leakyReLU(let slope) = activation { a.append(("leaky_slope", .double(slope))) }
    a += [
      ("W_std", .double(wStd)),
      ("b_std", bStd.map { .double($0) } ?? .string("none")),
      ("parameterization", .string(parameterization.rawValue)),
      ("width", .int(Int64(width))),
      ("gram_precision", .string(gramPrecision.rawValue)),
    ]
    return a
  }

  /// Reads a spec back from kernel-file attributes.
  public init(attributes get: (String) throws -> AttributeValue?) throws {
    func string(_ k: String) throws -> String {
      guard case .string(let s)? = try get(k) else { throw KernelSpecError("missing attribute \(k)") }
      return s
    }
    func double(_ k: String) throws -> Double {
      guard case .double(let d)? = try get(k) else { throw KernelSpecError("missing attribute \(k)") }
      return d
    }
    func int(_ k: String) throws -> Int {
      guard case .int(let i)? = try get(k) else { throw KernelSpecError("missing attribute \(k)") }
      return Int(i)
    }
    let name = try string("activation")
    let slope = name == "leaky_relu" ? try double("leaky_slope") : 0.01
    guard let act = Activation(name: name, leakySlope: slope) else { throw KernelSpecError("unknown activation \(name)") }
    guard let p = Parameterization(rawValue: try string("parameterization")) else { throw KernelSpecError("unknown parameterization") }
    let bStd: Double?
    if case .double(let b)? = try get("b_std") { bStd = b } else { bStd = nil }
    // Files written before the attribute existed used float64 dot products.
    var precision = GramPrecision.float64
    if try get("gram_precision") != nil {
      guard let g = GramPrecision(rawValue: try string("gram_precision")) else { throw KernelSpecError("unknown gram_precision") }
      precision = g
    }
    self.init(depth: try int("depth"), activation: act, wStd: try double("W_std"), bStd: bStd,
              parameterization: p, width: try int("width"), gramPrecision: precision)
  }

  /// One line for logs and `ntkgram info`.
  public var summary: String {
    "fully_connected depth=\(depth) activation=\(activation) W_std=\(wStd) b_std=\(bStd.map { "\($0)" } ?? "none") parameterization=\(parameterization.rawValue) width=\(width) gram_precision=\(gramPrecision.rawValue)"
  }
}
