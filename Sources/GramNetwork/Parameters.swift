#if canImport(Glibc)
import Glibc
#endif

/// The weights of one dense layer of a concrete (finite) network, in the shapes and scaling of
/// the parameters neural-tangents' `stax.Dense` `init_fn` returns: `W` is `inputs × outputs`
/// (row-major), `b` has `outputs` values (stax keeps it as `1 × outputs`; the values are the
/// same and broadcast the same). Under the NTK parameterization both are unit Gaussians (the
/// layer multiplies by `W_std/√inputs` and `b_std`); under the standard one `W` carries
/// `W_std/√inputs` and `b` carries `b_std`.
public struct DenseParameters: Sendable, Equatable {
  /// 0-based position of the layer in the layer list (`/params/<position>/W` in a kernel file).
  public var position: Int
  public var inputs: Int
  public var outputs: Int
  /// `inputs × outputs`, row-major.
  public var W: [Double]
  /// `outputs` values; nil when the layer has no bias (`b_std = none`).
  public var b: [Double]?

  public init(position: Int, inputs: Int, outputs: Int, W: [Double], b: [Double]?) {
    precondition(W.count == inputs * outputs && (b == nil || b!.count == outputs), "DenseParameters: shapes")
    self.position = position
    self.inputs = inputs
    self.outputs = outputs
    self.W = W
    self.b = b
  }
}

extension DenseParameters {
  /// A layer's shapes with no values (`W` and `b` empty): for sizing, never for computing.
  public init(shapeOf s: NetworkParameters.Shape) {
    position = s.position
    inputs = s.inputs
    outputs = s.outputs
    W = []
    b = s.hasBias ? [] : nil
  }
}

/// The parameters of a whole fully-connected network, one `DenseParameters` per dense layer in
/// layer-list order (activations and `flatten` have none).
public struct NetworkParameters: Sendable, Equatable {
  public var dense: [DenseParameters]

  public init(dense: [DenseParameters]) {
    self.dense = dense
  }

  /// One dense layer's parameter shapes.
  public struct Shape: Sendable, Equatable {
    public var position: Int
    public var inputs: Int
    public var outputs: Int
    public var hasBias: Bool
  }

  /// The parameter shapes of `network` on samples of shape `inputShape`: a dense layer's fan-in
  /// is the size of its (flattened) input. Throws a `NetworkError` for a network a concrete
  /// fully-connected network cannot be made of.
  public static func shapes(of network: Network, inputShape: [Int]) throws -> [Shape] {
    let shapes = try network.shapes(input: inputShape)
    var out: [Shape] = []
    for (k, layer) in network.layers.enumerated() {
      switch layer {
      case .dense(let a):
        let input = k == 0 ? inputShape : shapes[k - 1]
        let inputs = input.reduce(1, *)
        // W's value count must be an Int a program can index (and far less to be held): a
        // product that overflows, or beyond 2^53, is refused before anything is sized from it.
        let (values, overflow) = inputs.multipliedReportingOverflow(by: a.width)
        guard !overflow, values <= 1 << 53 else {
          throw NetworkError(position: k, layerType: layer.typeName,
                             "W of \(inputs)×\(a.width) values is absurdly large (more than 2^53): use a smaller width")
        }
        out.append(Shape(position: k, inputs: inputs, outputs: a.width, hasBias: a.bStd != nil))
      case .conv, .avgPool, .globalAvgPool:
        throw NetworkError(position: k, layerType: layer.typeName,
                           "empirical kernels of convolutional networks are not implemented yet: dense, flatten and activation layers only")
      case .flatten, .activation: break
      }
    }
    return out
  }

  /// Parameters drawn from `seed`: every value is a function of (seed, layer position, tensor,
  /// index) alone (`CounterNormal`), so any rank can draw any layer by itself and every rank
  /// draws the same network.
  public static func draw(_ network: Network, inputShape: [Int], seed: UInt64) throws -> NetworkParameters {
    let shapes = try shapes(of: network, inputShape: inputShape)
    var dense: [DenseParameters] = []
    for s in shapes {
      guard case .dense(let a) = network.layers[s.position] else { continue }
      let wScale = a.parameterization == .standard ? a.wStd / Double(s.inputs).squareRoot() : 1
      let bScale = a.parameterization == .standard ? (a.bStd ?? 0) : 1
      let gw = CounterNormal(seed: seed, stream: UInt64(2 * s.position))
      let gb = CounterNormal(seed: seed, stream: UInt64(2 * s.position + 1))
      let W = (0..<(s.inputs * s.outputs)).map { gw.value(UInt64($0)) * wScale }
      let b = s.hasBias ? (0..<s.outputs).map { gb.value(UInt64($0)) * bScale } : nil
      dense.append(DenseParameters(position: s.position, inputs: s.inputs, outputs: s.outputs, W: W, b: b))
    }
    return NetworkParameters(dense: dense)
  }

  /// Checks that these parameters fit `network` on `inputShape`: one entry per dense layer, at
  /// its position, with its shapes and bias. The error names the first mismatch.
  public func check(fits network: Network, inputShape: [Int]) throws {
    let expected = try Self.shapes(of: network, inputShape: inputShape)
    let given = Dictionary(dense.map { ($0.position, $0) }, uniquingKeysWith: { a, _ in a })
    for s in expected {
      guard let p = given[s.position] else {
        throw NetworkError(position: s.position, layerType: "dense", "no parameters given for this layer (expected W of shape \(s.inputs)×\(s.outputs))")
      }
      guard p.inputs == s.inputs, p.outputs == s.outputs else {
        throw NetworkError(position: s.position, layerType: "dense",
                           "W has shape \(p.inputs)×\(p.outputs) but the layer needs \(s.inputs)×\(s.outputs)")
      }
      if s.hasBias && p.b == nil {
        throw NetworkError(position: s.position, layerType: "dense", "no bias b given, but the layer has b_std (expected \(s.outputs) values)")
      }
      if !s.hasBias && p.b != nil {
        throw NetworkError(position: s.position, layerType: "dense", "a bias b is given, but the layer has b_std = none")
      }
    }
    if let extra = dense.first(where: { p in !expected.contains { $0.position == p.position } }) {
      throw NetworkError(position: extra.position, "parameters are given for this position, but it is not a dense layer of the network")
    }
  }

  /// Number of scalar parameters.
  public var count: Int { dense.reduce(0) { $0 + $1.W.count + ($1.b?.count ?? 0) } }
}

/// A counter-based Gaussian generator: value `i` of stream `s` under `seed` is a pure function
/// of the three (SplitMix64's output function applied to `key + (counter+1)·γ`, two outputs
/// turned into one normal by the Box–Muller cosine branch). Nothing is sequential, so a rank can
/// produce any slice of any tensor alone.
public struct CounterNormal: Sendable {
  let key: UInt64

  public init(seed: UInt64, stream: UInt64) {
    key = Self.mix(Self.mix(seed &+ 0x632b_e59b_d9b4_e019) ^ (stream &* 0x9e37_79b9_7f4a_7c15 &+ 0x1234_5678_9abc_def1))
  }

  static let gamma: UInt64 = 0x9e37_79b9_7f4a_7c15

  @inline(__always)
  static func mix(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }

  /// Output `counter` of the stream as a 64-bit word.
  @inline(__always)
  public func bits(_ counter: UInt64) -> UInt64 { Self.mix(key &+ (counter &+ 1) &* Self.gamma) }

  /// The `i`-th standard normal of the stream.
  public func value(_ i: UInt64) -> Double {
    let u1 = (Double(bits(2 &* i) >> 11) + 0.5) / Double(1 << 53)
    let u2 = (Double(bits(2 &* i &+ 1) >> 11) + 0.5) / Double(1 << 53)
    return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
  }
}
