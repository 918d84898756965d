import Dispatch
import GramMicroKernels
import GramNetwork

#if canImport(Glibc)
import Glibc
#endif

// The empirical kernels of one concrete fully-connected network (docs/finite-width.md).
//
// Dense layer l (l = 0 … L, L the readout) maps its input a_l (n_l values) to
// z_l = c_l·W_lᵀa_l + β_l·b_l (m_l values), with c_l = W_std/√n_l, β_l = b_std under the NTK
// parameterization and c_l = β_l = 1 under the standard one (W_l, b_l as stax stores them);
// a_{l+1} = φ_l(z_l). With G_l = ∂f/∂z_l (m_l × k for the k outputs; G_L = I), the derivative
// of output o with respect to W_l[p, q] is c_l·a_l[p]·G_l[q, o], so
//
//   Θ̂(x, x′) = (1/k)·Σ_o ∂f_o(x)/∂θ · ∂f_o(x′)/∂θ
//            = (1/k)·Σ_{l<L} (c_l²·a_l·a_l′ + β_l²)·⟨G_l, G_l′⟩_F  +  c_L²·a_L·a_L′ + β_L²,
//
// (the trace over outputs normalised by k, as neural-tangents' `trace_axes=(-1,)`), and the
// empirical NNGP is the readout's feature Gram (W_std²/n_L)·a_L·a_L′ + b_std², the covariance
// of the outputs over the readout's weights given the hidden features: the quantity whose limit
// is the analytic NNGP. Per pair this costs Σ n_l + k·Σ_{l<L} m_l multiply-adds, never the
// parameter count. Every product is the packed Gram product (one FMA chain per entry), so an
// entry and a sample's features depend only on the samples: any tiling, rank count or thread
// count gives the same bytes.

/// A concrete fully-connected network: dense layers with their weights, one activation (or
/// none) between consecutive dense layers, ending with a dense readout.
public struct ConcreteNetwork: Sendable {
  public struct Dense: Sendable {
    public let position: Int
    public let inputs: Int
    public let outputs: Int
    /// `inputs × outputs`, row-major (stax's shape).
    public let W: [Double]
    /// `outputs × inputs`: the rows the forward product reads.
    let Wt: [Double]
    public let b: [Double]?
    /// c: the factor of W·a (`W_std/√inputs`, or 1 under the standard parameterization).
    public let weightScale: Double
    /// β: the factor of b (`b_std`, or 1 under the standard parameterization; 0 without bias).
    public let biasScale: Double
    public let affine: Affine
  }

  public let dense: [Dense]
  /// `activations[l]` follows `dense[l]`, for l < L (identity where two dense layers meet).
  public let activations: [Activation]
  public let parameters: NetworkParameters

  /// Outputs per sample (the readout's width).
  public var outputCount: Int { dense.last!.outputs }
  public var inputCount: Int { dense.first!.inputs }

  /// The network of `network` on samples of shape `inputShape` with `parameters` (which must
  /// fit it). Throws a `NetworkError` naming the layer a concrete network cannot take.
  public init(network: Network, inputShape: [Int], parameters: NetworkParameters) throws {
    try parameters.check(fits: network, inputShape: inputShape)
    try self.init(network: network, parameters: parameters)
  }

  /// The network's shapes with no weights (every `W` and `b` empty): enough for the costs and
  /// sizes `ntkgram plan` reports, never for a pass.
  public static func shapesOnly(network: Network, inputShape: [Int]) throws -> ConcreteNetwork {
    let shapes = try NetworkParameters.shapes(of: network, inputShape: inputShape)
    let empty = NetworkParameters(dense: shapes.map { DenseParameters(shapeOf: $0) })
    return try ConcreteNetwork(network: network, parameters: empty)
  }

  private init(network: Network, parameters: NetworkParameters) throws {
    let byPosition = Dictionary(parameters.dense.map { ($0.position, $0) }, uniquingKeysWith: { a, _ in a })
    var dense: [Dense] = [], activations: [Activation] = []
    var previousWasActivation = false
    for (k, layer) in network.layers.enumerated() {
      switch layer {
      case .flatten: continue
      case .dense(let a):
        if !dense.isEmpty && !previousWasActivation { activations.append(.identity) }
        let p = byPosition[k]!
        var wt = [Double](repeating: 0, count: p.W.count)
        if !p.W.isEmpty { for i in 0..<p.inputs { for j in 0..<p.outputs { wt[j * p.inputs + i] = p.W[i * p.outputs + j] } } }
        let ntk = a.parameterization == .ntk
        dense.append(Dense(position: k, inputs: p.inputs, outputs: p.outputs, W: p.W, Wt: wt, b: p.b,
                           weightScale: ntk ? a.wStd / Double(p.inputs).squareRoot() : 1,
                           biasScale: a.bStd == nil ? 0 : (ntk ? a.bStd! : 1), affine: a))
        previousWasActivation = false
      case .activation(let act):
        guard !dense.isEmpty else {
          throw NetworkError(position: k, layerType: layer.typeName, "an activation cannot be the first layer: start with dense")
        }
        guard !previousWasActivation else {
          throw NetworkError(position: k, layerType: layer.typeName, "two activations in a row are not implemented: put a dense layer between them")
        }
        activations.append(act)
        previousWasActivation = true
      default:
        throw NetworkError(position: k, layerType: layer.typeName,
                           "empirical kernels of convolutional networks are not implemented yet: dense, flatten and activation layers only")
      }
    }
    guard !dense.isEmpty else {
      throw NetworkError(position: nil, "the layer list has no dense layer: a concrete network (--empirical, --params, train) needs weights, so end it with a dense readout (width = its outputs per sample, e.g. the classes)")
    }
    // Each sample's features (`EmpiricalKernel.pairDepth`) are sized in Int: refuse widths
    // whose sum would not be one (each W is at most 2^53 values, but k·m_l need not be).
    let k = Double(dense.last!.outputs)
    let depth = dense.reduce(0.0) { $0 + Double($1.inputs) } + dense.dropLast().reduce(0.0) { $0 + k * Double($1.outputs) }
    guard depth <= 0x1p53 else {
      throw NetworkError(position: nil, "the dense widths \(dense.map { String($0.outputs) }.joined(separator: ", ")) give each sample \(depth) features: absurdly many; use smaller widths")
    }
    if previousWasActivation {
      throw NetworkError(position: network.layers.count - 1, layerType: network.layers.last!.typeName,
                         "an empirical kernel needs the network to end with its dense readout layer (its NNGP is the readout's feature Gram)")
    }
    self.dense = dense
    self.activations = activations
    self.parameters = parameters
  }

  /// Multiply-adds of one sample's forward pass.
  public var forwardCost: Int { dense.reduce(0) { $0 + $1.inputs * $1.outputs } }

  // MARK: Forward and backward passes over a block of samples

  /// The forward pass of `rows` samples (row-major, `inputCount` values each): the input of
  /// every dense layer (`inputs[0]` is the samples themselves) and every pre-activation,
  /// `rows × width` each; `pre[L]` is the output f.
  public func forward(_ x: UnsafePointer<Double>, rows: Int) -> (inputs: [[Double]], pre: [[Double]]) {
    var inputs: [[Double]] = [Array(UnsafeBufferPointer(start: x, count: rows * inputCount))]
    var pre: [[Double]] = []
    for (l, d) in dense.enumerated() {
      var z = [Double](repeating: 0, count: rows * d.outputs)
      let c = d.weightScale, beta = d.biasScale
      products(inputs[l], aStride: d.inputs, rows: rows, d.Wt, bStride: d.inputs, cols: d.outputs, depth: d.inputs) { i, row in
        for j in 0..<d.outputs { z[i * d.outputs + j] = c * row[j] }
        if let b = d.b { for j in 0..<d.outputs { z[i * d.outputs + j] += beta * b[j] } }
      }
      pre.append(z)
      if l < activations.count {
        let act = activations[l]
        inputs.append(z.map { act.apply($0) })
      }
    }
    return (inputs, pre)
  }

  /// The outputs f(x) of every row of `data` (`rows × outputCount`).
  public func outputs(_ data: Matrix) -> [Double] {
    guard data.rows > 0 else { return [] }
    return data.values.withUnsafeBufferPointer { forward($0.baseAddress!, rows: data.rows).pre.last! }
  }

  /// The derivatives of the outputs with respect to every hidden pre-activation, for the
  /// samples of a forward pass: `H[l]` (l < L) holds, for sample i and output o, the row
  /// `(i·k + o)` of `G_l[·, o]` (m_l values), so sample i's `G_l` is the contiguous
  /// `k·m_l` values from `i·k·m_l`.
  public func backward(pre: [[Double]], rows: Int) -> [[Double]] {
    let L = dense.count - 1, k = outputCount
    var H = [[Double]](repeating: [], count: L)
    guard L > 0 else { return H }
    // G_{L−1}[a, o] = φ′(z_{L−1}[a])·c_L·W_L[a, o].
    let top = dense[L], mTop = dense[L - 1].outputs
    var h = [Double](repeating: 0, count: rows * k * mTop)
    let actTop = activations[L - 1]
    for i in 0..<rows {
      for o in 0..<k {
        for a in 0..<mTop {
          h[(i * k + o) * mTop + a] = actTop.derivative(pre[L - 1][i * mTop + a]) * (top.weightScale * top.W[a * k + o])
        }
      }
    }
    H[L - 1] = h
    var l = L - 2
    while l >= 0 {
      // G_l = φ′(z_l) ⊙ (c_{l+1}·W_{l+1}·G_{l+1}).
      let next = dense[l + 1], m = dense[l].outputs, act = activations[l], c = next.weightScale
      var g = [Double](repeating: 0, count: rows * k * m)
      products(H[l + 1], aStride: next.outputs, rows: rows * k, next.W, bStride: next.outputs, cols: m, depth: next.outputs) { r, row in
        let i = r / k
        for a in 0..<m { g[r * m + a] = act.derivative(pre[l][i * m + a]) * (c * row[a]) }
      }
      H[l] = g
      l -= 1
    }
    return H
  }
}

/// Rows of `a` against rows of `b` (`Σ_k a[i,k]·b[j,k]`, one FMA chain per entry), handed to
/// `body(i, row)` one result row at a time.
func products(_ a: [Double], aStride: Int, rows: Int, _ b: [Double], bStride: Int, cols: Int, depth: Int,
              _ body: (Int, UnsafePointer<Double>) -> Void) {
  guard rows > 0, cols > 0 else { return }
  let ldc = GramShape.paddedCols(cols)
  var block = [Double](repeating: 0, count: GramShape.blockRows * ldc)
  var workspace = [Double](repeating: 0, count: GramShape.workspace(cols: cols, depth: depth))
  a.withUnsafeBufferPointer { ap in
    b.withUnsafeBufferPointer { bp in
      block.withUnsafeMutableBufferPointer { cp in
        workspace.withUnsafeMutableBufferPointer { wp in
          gram(ap.baseAddress!, aStride: aStride, rows: rows, bp.baseAddress!, bStride: bStride, cols: cols, depth: depth,
               into: cp.baseAddress!, ldc: ldc, workspace: wp.baseAddress!) { range in
            for i in range { body(i, UnsafePointer(cp.baseAddress! + (i - range.lowerBound) * ldc)) }
          }
        }
      }
    }
  }
}

extension Activation {
  /// The activation's value, as neural-tangents' stax layer computes it.
  @inline(__always)
  public func apply(_ z: Double) -> Double {
    switch self {
    case .relu: return max(z, 0)
    case .leakyReLU(let slope): return z > 0 ? z : slope * z
    case .abs: return Swift.abs(z)
    case .erf: return Glibc.erf(z)
    case .identity: return z
    }
  }

  /// Its derivative; at the kink z = 0 of relu, leaky relu and abs, the mean of the two
  /// one-sided slopes (what JAX's `max`/`min` differentiate to at a tie).
  @inline(__always)
  public func derivative(_ z: Double) -> Double {
    switch self {
    case .relu: return z > 0 ? 1 : (z < 0 ? 0 : 0.5)
    case .leakyReLU(let slope): return z > 0 ? 1 : (z < 0 ? slope : (1 + slope) / 2)
    case .abs: return z > 0 ? 1 : (z < 0 ? -1 : 0)
    case .erf: return 2 / Double.pi.squareRoot() * exp(-z * z)
    case .identity: return 1
    }
  }
}

/// A block of doubles owned by one object, so that threads can fill disjoint rows of it.
final class FeatureBuffer: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Double>
  let count: Int

  init(count: Int) {
    self.count = count
    pointer = .allocate(capacity: max(count, 1))
    pointer.initialize(repeating: 0, count: max(count, 1))
  }

  deinit { pointer.deallocate() }

  var values: [Double] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// The per-sample quantities of an empirical kernel: every dense layer's input and the
/// derivatives of the outputs with respect to every hidden layer (see `ConcreteNetwork`).
public struct EmpiricalFeatures: Sendable {
  public let rows: Int
  /// `inputs[l]`: `rows × n_l`, l = 0 … L.
  let inputs: [FeatureBuffer]
  /// `derivatives[l]`: `rows × k·m_l`, l < L.
  let derivatives: [FeatureBuffer]
}

/// The empirical NTK and NNGP of one concrete network, through the same tiles as the analytic
/// kernels (`ConcreteNetwork` for the definitions).
public struct EmpiricalKernel: GramKernel {
  public let network: ConcreteNetwork
  /// Values of packed columns a product may hold (columns are taken in chunks that fit).
  var packedValues = 4 << 20
  /// Samples per block of `prepare` (the unit of its threads).
  var blockRows = 256
  public var outputNames: [String] { ["ntk", "nngp"] }

  public init(network: ConcreteNetwork) {
    self.network = network
  }

  /// The kernel of `network`'s shapes with no weights: for sizes and costs (`plan`, the early
  /// check against the files' headers), never for a tile.
  public static func sizing(network: Network, inputShape: [Int]) throws -> EmpiricalKernel {
    EmpiricalKernel(network: try ConcreteNetwork.shapesOnly(network: network, inputShape: inputShape))
  }

  /// Scalar parameters (every W and b), counted in Double (never overflows).
  public var parameterCount: Double {
    network.dense.reduce(0.0) { $0 + Double($1.inputs) * Double($1.outputs) + ($1.affine.bStd == nil ? 0 : Double($1.outputs)) }
  }

  /// Copies of the weights a build holds: the parameters as drawn or read (shared with the
  /// network) and the transposed rows of the forward product.
  public static let buildWeightCopies = 2.0

  /// Bytes of one row's forward and backward pass (every layer's input, pre-activation and
  /// output derivatives, float64).
  public var passBytesPerRow: Double {
    let k = Double(network.outputCount)
    return 8 * network.dense.reduce(0.0) { $0 + 2 * Double($1.inputs) + Double($1.outputs) }
      + 8 * 2 * network.dense.dropLast().reduce(0.0) { $0 + k * Double($1.outputs) }
  }

  /// Bytes of `copies` of the weights.
  public func weightBytes(copies: Double = buildWeightCopies) -> Double { copies * 8 * parameterCount }

  /// Bytes of the passes: a block of rows per thread while preparing, and the forward pass
  /// over all `rows` that gives the initial outputs.
  public func passBytes(rows: Int, heldRows: Int, threads: Int) -> Double {
    Double(max(threads, 1)) * Double(min(blockRows, max(heldRows, 1))) * passBytesPerRow + Double(rows) * passBytesPerRow
  }

  /// Floating-point operations of one sample's forward and backward passes (`prepare`): the
  /// forward products, and one backward product per output.
  public var preparationFlopsPerRow: Double { 2 * parameterCount * (1 + Double(network.outputCount)) }

  /// What a rank of an empirical build holds at its peak, in bytes (Double: no overflow):
  /// `copies` of the weights, the prepared features of `heldRows` samples, and the passes.
  public func peakBytes(rows: Int, heldRows: Int, threads: Int, weightCopies: Double = buildWeightCopies) -> Double {
    weightBytes(copies: weightCopies) + Double(heldRows) * 8 * Double(pairDepth) + passBytes(rows: rows, heldRows: heldRows, threads: threads)
  }

  /// The dense widths, for messages (`784 → 2048, 2048, 10`).
  public var widthsDescription: String { network.dense.map { String($0.outputs) }.joined(separator: ", ") }

  /// Values one pair of samples reads: every layer's input and derivative widths.
  var pairDepth: Int {
    let k = network.outputCount
    return network.dense.reduce(0) { $0 + $1.inputs } + network.dense.dropLast().reduce(0) { $0 + k * $1.outputs }
  }

  var maxDepth: Int {
    let k = network.outputCount
    return max(network.dense.map(\.inputs).max()!, network.dense.dropLast().map { k * $0.outputs }.max() ?? 0)
  }

  public func costPerEntry(inputFeatures: Int) -> Double { Double(2 * pairDepth + 6 * network.dense.count) }

  public func preparedBytesPerSample(inputFeatures: Int) -> Int { 8 * pairDepth }

  /// Columns per packed product, so that the packed columns stay within `packedValues`.
  func columnChunk(_ cols: Int) -> Int {
    max(32, min(roundUp(max(cols, 1), 32), packedValues / max(maxDepth, 1) / 32 * 32))
  }

  public func scratchCount(inputFeatures: Int, rows: Int, cols: Int) -> Int {
    let chunk = columnChunk(cols)
    return rows * chunk + GramShape.blockRows * GramShape.paddedCols(chunk) + GramShape.workspace(cols: chunk, depth: maxDepth)
  }

  public func prepare(_ data: Matrix) -> EmpiricalFeatures { prepare(data, threads: 1) }

  /// The forward and backward passes of every row, in blocks of rows spread over `threads`
  /// (each block writes only its own rows).
  public func prepare(_ data: Matrix, threads: Int) -> EmpiricalFeatures {
    precondition(data.cols == network.inputCount, "EmpiricalKernel.prepare: \(data.cols) features, the network takes \(network.inputCount)")
    let n = data.rows, k = network.outputCount, L = network.dense.count - 1
    let widths = network.dense.map(\.inputs)
    let derivativeWidths = network.dense.dropLast().map { k * $0.outputs }
    let inputs = widths.map { FeatureBuffer(count: n * $0) }
    let derivatives = derivativeWidths.map { FeatureBuffer(count: n * $0) }
    let rowsPerBlock = blockRows, blocks = (n + rowsPerBlock - 1) / rowsPerBlock
    let net = network
    let work: @Sendable (Int) -> Void = { t in
      var blk = t
      while blk < blocks {
        let r0 = blk * rowsPerBlock, r = min(rowsPerBlock, n - r0)
        let pass = data.values.withUnsafeBufferPointer { net.forward($0.baseAddress! + r0 * data.cols, rows: r) }
        let H = net.backward(pre: pass.pre, rows: r)
        for l in 0...L {
          pass.inputs[l].withUnsafeBufferPointer { (inputs[l].pointer + r0 * widths[l]).update(from: $0.baseAddress!, count: r * widths[l]) }
        }
        for l in 0..<L {
          H[l].withUnsafeBufferPointer { (derivatives[l].pointer + r0 * derivativeWidths[l]).update(from: $0.baseAddress!, count: r * derivativeWidths[l]) }
        }
        blk += max(threads, 1)
      }
    }
    let t = max(1, min(threads, blocks))
    if t == 1 { if blocks > 0 { work(0) } } else { DispatchQueue.concurrentPerform(iterations: t, execute: work) }
    return EmpiricalFeatures(rows: n, inputs: inputs, derivatives: derivatives)
  }

  public func rowCount(_ features: EmpiricalFeatures) -> Int { features.rows }
  public func inputFeatures(_ features: EmpiricalFeatures) -> Int { network.inputCount }

  public func computeTile(_ a: EmpiricalFeatures, rows: Range<Int>, _ b: EmpiricalFeatures, cols: Range<Int>,
                          into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>) {
    tile(a, rows: rows, b, cols: cols, into: out, scratch: scratch, upper: false)
  }

  public func computeUpperTile(_ a: EmpiricalFeatures, rows: Range<Int>, into out: TileOutput,
                               scratch: UnsafeMutableBufferPointer<Double>) {
    tile(a, rows: rows, a, cols: rows, into: out, scratch: scratch, upper: true)
  }

  /// A tile, or with `upper` (then `a == b`, `rows == cols`) its entries `j ≥ i`.
  func tile(_ a: EmpiricalFeatures, rows: Range<Int>, _ b: EmpiricalFeatures, cols: Range<Int>,
            into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>, upper: Bool) {
    let m = rows.count, n = cols.count
    guard m > 0, n > 0 else { return }
    precondition(scratch.count >= scratchCount(inputFeatures: network.inputCount, rows: m, cols: n), "computeTile: scratch too small")
    let L = network.dense.count - 1, k = Double(network.outputCount)
    let chunk = columnChunk(n)
    let P = scratch.baseAddress!
    let block = P + m * chunk
    let workspace = block + GramShape.blockRows * GramShape.paddedCols(chunk)
    let ntk = out.values[0], nngp = out.values[1], ld = out.leadingDimension
    let readout = network.dense[L]
    let nngpWeight = readout.affine.wStd * readout.affine.wStd / Double(readout.inputs)
    let nngpBias = readout.affine.bStd.map { $0 * $0 } ?? 0
    var j0 = 0
    while j0 < n {
      let nc = min(chunk, n - j0), ldc = GramShape.paddedCols(nc)
      let upperFrom: Int? = upper ? j0 : nil
      /// Rows × this chunk's columns of one product, each row handed to `body(i, row)`.
      func product(_ x: FeatureBuffer, _ y: FeatureBuffer, depth: Int, _ body: (Int, UnsafePointer<Double>) -> Void) {
        gram(UnsafePointer(x.pointer) + rows.lowerBound * depth, aStride: depth, rows: m,
             UnsafePointer(y.pointer) + (cols.lowerBound + j0) * depth, bStride: depth, cols: nc, depth: depth,
             into: block, ldc: ldc, workspace: workspace, upperFrom: upperFrom) { range in
          for i in range { body(i, UnsafePointer(block + (i - range.lowerBound) * ldc)) }
        }
        withExtendedLifetime((x, y)) {}
      }
      @inline(__always) func first(_ i: Int) -> Int { upper ? min(nc, max(0, i - j0)) : 0 }
      for l in 0...L {
        let d = network.dense[l]
        let c2 = d.weightScale * d.weightScale, beta2 = d.biasScale * d.biasScale
        if l < L {
          product(a.inputs[l], b.inputs[l], depth: d.inputs) { i, row in
            for j in first(i)..<nc { P[i * chunk + j] = c2 * row[j] + beta2 }
          }
          product(a.derivatives[l], b.derivatives[l], depth: network.outputCount * d.outputs) { i, row in
            let o = ntk + i * ld + j0
            if l == 0 {
              for j in first(i)..<nc { o[j] = P[i * chunk + j] * row[j] }
            } else {
              for j in first(i)..<nc { o[j] += P[i * chunk + j] * row[j] }
            }
          }
        } else {
          product(a.inputs[l], b.inputs[l], depth: d.inputs) { i, row in
            let o = ntk + i * ld + j0, g = nngp + i * ld + j0
            for j in first(i)..<nc {
              let hidden = L > 0 ? o[j] / k : 0
              o[j] = hidden + (c2 * row[j] + beta2)
              g[j] = nngpWeight * row[j] + nngpBias
            }
          }
        }
      }
      j0 += nc
    }
  }

  /// One entry by plain loops: each sample's forward and backward pass on its own, then the
  /// sums of `ConcreteNetwork`'s formula.
  public func referenceEntry(_ x: [Double], _ y: [Double]) -> [Double] {
    let fx = referenceFeatures(x), fy = referenceFeatures(y)
    let L = network.dense.count - 1, k = Double(network.outputCount)
    func dot(_ u: [Double], _ v: [Double]) -> Double { zip(u, v).reduce(0) { $0 + $1.0 * $1.1 } }
    var hidden = 0.0
    for l in 0..<L {
      let d = network.dense[l]
      hidden += (d.weightScale * d.weightScale * dot(fx.inputs[l], fy.inputs[l]) + d.biasScale * d.biasScale)
        * dot(fx.derivatives[l], fy.derivatives[l])
    }
    let r = network.dense[L], p = dot(fx.inputs[L], fy.inputs[L])
    let ntk = hidden / k + r.weightScale * r.weightScale * p + r.biasScale * r.biasScale
    let nngp = r.affine.wStd * r.affine.wStd / Double(r.inputs) * p + (r.affine.bStd.map { $0 * $0 } ?? 0)
    return [ntk, nngp]
  }

  /// One sample's layer inputs and (k × m_l, output-major) derivatives, by plain loops.
  func referenceFeatures(_ x: [Double]) -> (inputs: [[Double]], derivatives: [[Double]]) {
    let L = network.dense.count - 1, k = network.outputCount
    var inputs = [x], pre: [[Double]] = []
    for (l, d) in network.dense.enumerated() {
      var z = [Double](repeating: 0, count: d.outputs)
      for j in 0..<d.outputs {
        var s = 0.0
        for i in 0..<d.inputs { s += d.W[i * d.outputs + j] * inputs[l][i] }
        z[j] = d.weightScale * s + d.biasScale * (d.b?[j] ?? 0)
      }
      pre.append(z)
      if l < L { inputs.append(z.map { network.activations[l].apply($0) }) }
    }
    var derivatives = [[Double]](repeating: [], count: L)
    // g[o][a] = ∂f_o/∂z_l[a], from the readout down.
    var g: [[Double]] = (0..<k).map { o in (0..<k).map { $0 == o ? 1 : 0 } }
    var l = L - 1
    while l >= 0 {
      let next = network.dense[l + 1], m = network.dense[l].outputs
      g = g.map { go in
        (0..<m).map { a in
          var s = 0.0
          for q in 0..<next.outputs { s += next.W[a * next.outputs + q] * go[q] }
          return network.activations[l].derivative(pre[l][a]) * (next.weightScale * s)
        }
      }
      derivatives[l] = g.flatMap { $0 }
      l -= 1
    }
    return (inputs, derivatives)
  }
}
