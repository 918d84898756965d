#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GramMicroKernels
import GramMicroKernelsAVX512
import GramNetwork

// MARK: - Prepared features

/// A dataset prepared for fully-connected kernel tiles.
public struct FCFeatures: Sendable {
  public let rows: Int
  /// Feature count `d` of the input.
  public let dimension: Int
  /// Row stride of `x` (and `x32`).
  let stride: Int
  let x: [Double]
  /// `x` rounded to float32, for float32 dot products (empty otherwise).
  let x32: [Float]
  /// The precision of the dot products these features were prepared for.
  let gramPrecision: GramPrecision
  /// Pre-activation variance `q_l(x)` after hidden dense layer `l`, layer-major: `[l*rows + i]`.
  let layerVariance: [Double]
  /// Exact θ = 0 values `K(x, x)`.
  public let diagonalNNGP: [Double]
  public let diagonalNTK: [Double]
  /// Hash of each row's values: equal rows have equal keys (the converse is checked).
  let rowKey: [UInt64]

  func rowPointerEqual(_ i: Int, _ other: FCFeatures, _ j: Int) -> Bool {
    x.withUnsafeBufferPointer { p in
      other.x.withUnsafeBufferPointer { q in
        for k in 0..<dimension where p[i * stride + k] != q[j * other.stride + k] { return false }
        return true
      }
    }
  }
}

// MARK: - Per-layer recursion (scalar and vector forms of the same formulas)

/// The constants of one activation's kernel map.
///
/// ABReLU(a, b) = a·min(x,0) + b·max(x,0), with θ = atan2(√(q q′ − Σ²), Σ):
///   Σ′ = (a−b)²/(2π)·√(q q′ − Σ²) + ((a²+b²)/2 − (a−b)²θ/(2π))·Σ,
///   Σ̇  = (a²+b²)/2 − (a−b)²θ/(2π);   at θ = 0: Σ′ = (a²+b²)/2·q, Σ̇ = (a²+b²)/2.
/// Erf, with P = (1+2q)(1+2q′):
///   Σ′ = (2/π)·asin(2Σ/√P) = (2/π)·atan2(2Σ, √(P − 4Σ²)),   Σ̇ = (4/π)/√(P − 4Σ²);
///   at θ = 0: P − 4q² = 1 + 4q exactly.
/// Numerical caveat: near θ = 0 the rounding of q q′ − Σ² costs ~√ε relative; identical rows
/// therefore use the θ = 0 forms, never the general ones.
@usableFromInline
struct ActivationMap: Sendable {
  @usableFromInline enum Kind: Sendable { case abReLU, erf, identity }
  @usableFromInline let kind: Kind
  /// ABReLU: `(a−b)²/(2π)` and `(a²+b²)/2`.
  @usableFromInline let angular: Double
  @usableFromInline let even: Double

  init(_ activation: Activation) {
    switch activation.family {
    case .abReLU(let a, let b):
      kind = .abReLU
      angular = (a - b) * (a - b) / (2 * Double.pi)
      even = (a * a + b * b) / 2
    case .erf:
      kind = .erf; angular = 0; even = 0
    case .identity:
      kind = .identity; angular = 0; even = 1
    }
  }

  /// θ = 0: `(Σ′, Σ̇)` of a variance `q`.
  func diagonal(_ q: Double) -> (Double, Double) {
    switch kind {
    case .abReLU: return (even * q, even)
    case .erf: return (2 / Double.pi * asin(2 * q / (1 + 2 * q)), 4 / Double.pi / (1 + 4 * q).squareRoot())
    case .identity: return (q, 1)
    }
  }

  /// The scalar reference of the general map (libm `atan2`, `sqrt`).
  func pair(_ s: Double, _ qi: Double, _ qj: Double) -> (Double, Double) {
    switch kind {
    case .abReLU:
      let r = Swift.max(qi * qj - s * s, 0).squareRoot()
      let theta = Glibc.atan2(r, s)
      let dot = even - angular * theta
      return (angular * r + dot * s, dot)
    case .erf:
      let r = Swift.max((1 + 2 * qi) * (1 + 2 * qj) - 4 * s * s, 0).squareRoot()
      return (2 / Double.pi * Glibc.atan2(2 * s, r), 4 / Double.pi / r)
    case .identity:
      return (s, 1)
    }
  }
}

extension ActivationMap {
  /// The vector form of `pair` (`GramMicroKernels`: the same formulas, lane by lane).
  var vectorForm: PairMapKind {
    switch kind {
    case .abReLU: return .abReLU(ABReLUPair(angular: angular, even: even))
    case .erf: return .erf
    case .identity: return .identity
    }
  }
}

extension FullyConnected {
  /// Dense layer `l` (0-based; `depth` is the readout) applied to one pair `(Σ, Θ)`: the same
  /// formulas the recursion applies to vectors.
  func dense(_ s: Double, _ t: Double, layer: Int, inputDimension: Int) -> (Double, Double) {
    let (sv, tv) = denseLayer(layer, inputDimension: inputDimension).apply(SIMD2(s, 0), SIMD2(t, 0))
    return (sv[0], tv[0])
  }

  /// The activation maps of the hidden layers.
  var activationMaps: [ActivationMap] { activations.map(ActivationMap.init) }
}

// MARK: - GramKernel conformance

extension FullyConnected: GramKernel {
  public typealias Features = FCFeatures

  /// `/train/ntk` and `/train/nngp` (and `/test/*`).
  public var outputNames: [String] { ["ntk", "nngp"] }

  /// The dot product (2d) and, per hidden layer, the activation map: about 70 operations for
  /// the angular maps (√, atan2, two divisions), 10 for identity; 4 per dense layer.
  public func costPerEntry(inputFeatures: Int) -> Double {
    let maps = activations.reduce(0.0) { acc, act in
      switch act.family {
      case .abReLU, .erf: acc + 70
      case .identity: acc + 10
      }
    }
    return 2 * Double(inputFeatures) * (gramPrecision == .float32 ? 0.5 : 1) + maps + 4 * Double(depth + 1)
  }

  /// The row in float64 (and float32 for float32 dot products), its variance per hidden
  /// layer, the two diagonal values and the row hash.
  public func preparedBytesPerSample(inputFeatures: Int) -> Int {
    let d = max(1, inputFeatures)
    return d * 8 + (gramPrecision == .float32 ? d * 4 : 0) + depth * 8 + 3 * 8
  }

  public func inputFeatures(_ features: FCFeatures) -> Int { features.dimension }

  public func prepare(_ data: Matrix) -> FCFeatures {
    let d = data.cols, n = data.rows
    let stride = Swift.max(1, d)
    var x = [Double](repeating: 0, count: n * stride)
    var variance = [Double](repeating: 0, count: depth * n)
    var nngp = [Double](repeating: 0, count: n), ntk = [Double](repeating: 0, count: n)
    var keys = [UInt64](repeating: 0, count: n)
    let maps = activationMaps
    for i in 0..<n {
      var hash: UInt64 = 0xcbf2_9ce4_8422_2325
      for k in 0..<d {
        let v = data.values[i * d + k] + 0  // folds −0 into +0
        x[i * stride + k] = v
        hash = (hash ^ v.bitPattern) &* 0x0000_0100_0000_01b3
      }
      keys[i] = hash
    }
    x.withUnsafeBufferPointer { p in
      for i in 0..<n {
        // The same chain the float64 Gram product uses, so that its diagonal is q.
        let row = p.baseAddress! + i * stride
        var q = sequentialDot(row, row, depth: d) / Double(d)
        var t = 0.0
        for l in 0..<depth {
          (q, t) = dense(q, t, layer: l, inputDimension: d)
          variance[l * n + i] = q
          let (qa, dot) = maps[l].diagonal(q)
          q = qa; t *= dot
        }
        (nngp[i], ntk[i]) = dense(q, t, layer: depth, inputDimension: d)
      }
    }
    let x32 = gramPrecision == .float32 ? x.map { Float($0) } : []
    return FCFeatures(rows: n, dimension: d, stride: stride, x: x, x32: x32, gramPrecision: gramPrecision, layerVariance: variance,
                      diagonalNNGP: nngp, diagonalNTK: ntk, rowKey: keys)
  }

  public func rowCount(_ features: FCFeatures) -> Int { features.rows }

  /// Scratch layout (in `Double`s): one block of Gram rows (`GramShape.blockRows ×
  /// paddedCols`), the column variances per layer, two rows of recursion state, the packing
  /// workspace. float32 dot products use the same regions for their floats.
  public func scratchCount(inputFeatures: Int, rows: Int, cols: Int) -> Int {
    let np = GramShape.paddedCols(cols)
    return GramShape.blockRows * np + (depth + 2) * np + GramShape.workspace(cols: cols, depth: inputFeatures)
  }

  /// The Gram product of a tile, one block of `GramShape.blockRows` rows at a time into the
  /// start of `scratch`, each block handed to `body` (with the block's rows, `ldc`) while it is
  /// in cache. `body` reads the block as `Double`s or as `Float`s, per `gramPrecision`.
  @inline(__always)
  func gramBlocks(_ a: FCFeatures, rows: Range<Int>, _ b: FCFeatures, cols: Range<Int>,
                  scratch: UnsafeMutableBufferPointer<Double>, upper: Bool, isa: GramISA = .current,
                  float64 body64: (Range<Int>, UnsafePointer<Double>) -> Void,
                  float32 body32: (Range<Int>, UnsafePointer<Float>) -> Void) {
    let m = rows.count, n = cols.count
    let np = GramShape.paddedCols(n)
    let base = scratch.baseAddress!
    let workspace = base + GramShape.blockRows * np + (depth + 2) * np
    // The recursion of an upper block reads from column w⌊i/w⌋ ≥ i − 7 in row i (w ≤ 8).
    let upperFrom: Int? = upper ? 7 : nil
    // One precision's product: rows of `ax` against rows of `bx` into `c`.
    @inline(__always)
    func run<T: BinaryFloatingPoint>(_ ax: [T], _ bx: [T], into c: UnsafeMutablePointer<T>, workspace ws: UnsafeMutablePointer<T>,
                                     _ body: (Range<Int>, UnsafePointer<T>) -> Void) {
      ax.withUnsafeBufferPointer { ap in
        bx.withUnsafeBufferPointer { bp in
          gram(ap.baseAddress! + rows.lowerBound * a.stride, aStride: a.stride, rows: m,
               bp.baseAddress! + cols.lowerBound * b.stride, bStride: b.stride, cols: n,
               depth: a.dimension, into: c, ldc: np, workspace: ws, upperFrom: upperFrom, isa: isa) { block in
            body(block, UnsafePointer(c))
          }
        }
      }
    }
    switch gramPrecision {
    case .float64:
      run(a.x, b.x, into: base, workspace: workspace, body64)
    case .float32:
      let c = UnsafeMutableRawPointer(base).bindMemory(to: Float.self, capacity: GramShape.blockRows * np)
      let ws = UnsafeMutableRawPointer(workspace).bindMemory(
        to: Float.self, capacity: GramShape.workspace(cols: n, depth: a.dimension))
      run(a.x32, b.x32, into: c, workspace: ws, body32)
      // The whole scratch is Doubles again for the next tile (block and workspace alike).
      UnsafeMutableRawPointer(base).bindMemory(to: Double.self, capacity: scratch.count)
    }
  }

  public func computeTile(_ a: FCFeatures, rows: Range<Int>, _ b: FCFeatures, cols: Range<Int>,
                          into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>) {
    tile(a, rows: rows, b, cols: cols, into: out, scratch: scratch, upper: false)
  }

  public func computeUpperTile(_ a: FCFeatures, rows: Range<Int>, into out: TileOutput,
                               scratch: UnsafeMutableBufferPointer<Double>) {
    tile(a, rows: rows, a, cols: rows, into: out, scratch: scratch, upper: true)
  }

  /// A tile, or with `upper` (then `a == b`, `rows == cols`) the entries `j ≥ i` of a diagonal
  /// tile; an upper tile may also write some entries just left of its diagonal.
  func tile(_ a: FCFeatures, rows: Range<Int>, _ b: FCFeatures, cols: Range<Int>,
            into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>, upper: Bool, isa: GramISA = .current) {
    precondition(a.dimension == b.dimension, "computeTile: feature counts differ")
    precondition(a.gramPrecision == gramPrecision && b.gramPrecision == gramPrecision,
                 "computeTile: features prepared for another dot-product precision")
    let m = rows.count, n = cols.count
    let np = GramShape.paddedCols(n)
    precondition(scratch.count >= scratchCount(a, rows: m, cols: n), "computeTile: scratch too small")
    let qCols = scratch.baseAddress! + GramShape.blockRows * np
    let state = qCols + depth * np

    // Column variances per layer, padded with 1 (up to `np`: the widest vectors read past n).
    for l in 0..<depth {
      for j in 0..<np { qCols[l * np + j] = j < n ? b.layerVariance[l * b.rows + cols.lowerBound + j] : 1 }
    }

    // The recursion on each block of Gram rows, specialised for each layer's activation, the
    // precision of the block and the instruction set.
    let ntkOut = out.values[0], nngpOut = out.values[1]
    let layers = (0...depth).map { denseLayer($0, inputDimension: a.dimension) }
    let maps = activationMaps.map(\.vectorForm)
    a.layerVariance.withUnsafeBufferPointer { qa in
      layers.withUnsafeBufferPointer { lp in
        maps.withUnsafeBufferPointer { mp in
          let recursion = RowRecursion(
            layers: lp.baseAddress!, maps: mp.baseAddress ?? UnsafePointer(bitPattern: MemoryLayout<PairMapKind>.alignment)!,
            depth: depth, inputDimension: Double(a.dimension), columns: n, qCols: qCols, paddedCols: np,
            rowVariance: (qa.baseAddress ?? UnsafePointer(bitPattern: 8)!) + rows.lowerBound, rowVarianceStride: a.rows, state: state,
            nngp: nngpOut, ntk: ntkOut, leadingDimension: out.leadingDimension, upper: upper)
          let wide = isa == .avx512
          gramBlocks(a, rows: rows, b, cols: cols, scratch: scratch, upper: upper, isa: isa,
                     float64: { block, c in
                       if wide { AVX512.recurse(recursion, block, c, ldc: np) }
                       else { recursion.rows(Lanes.self, block, c, ldc: np) }
                     },
                     float32: { block, c in
                       if wide { AVX512.recurse(recursion, block, c, ldc: np) }
                       else { recursion.rows(Lanes.self, block, c, ldc: np) }
                     })
        }
      }
    }

    // Identical rows take the exact θ = 0 values.
    for i in 0..<m {
      let gi = rows.lowerBound + i
      let key = a.rowKey[gi]
      for j in (upper ? i : 0)..<n where b.rowKey[cols.lowerBound + j] == key && a.rowPointerEqual(gi, b, cols.lowerBound + j) {
        nngpOut[i * out.leadingDimension + j] = a.diagonalNNGP[gi]
        ntkOut[i * out.leadingDimension + j] = a.diagonalNTK[gi]
      }
    }
  }
}

// MARK: - Scalar reference kernel

extension FullyConnected {
  /// The scalar reference kernel `(NNGP, NTK)` of one pair of inputs: libm functions, no
  /// vectors, no tiles. The SIMD tile kernel is tested against it.
  public func referenceKernel(_ x: some Collection<Double>, _ y: some Collection<Double>) -> (nngp: Double, ntk: Double) {
    precondition(x.count == y.count, "referenceKernel: feature counts differ")
    let d = x.count
    let maps = activationMaps
    func variances(_ v: some Collection<Double>) -> (layers: [Double], nngp: Double, ntk: Double) {
      var q = v.reduce(0) { $0 + $1 * $1 } / Double(d), t = 0.0
      var layers: [Double] = []
      for l in 0..<depth {
        (q, t) = dense(q, t, layer: l, inputDimension: d)
        layers.append(q)
        let (qa, dot) = maps[l].diagonal(q)
        q = qa; t *= dot
      }
      (q, t) = dense(q, t, layer: depth, inputDimension: d)
      return (layers, q, t)
    }
    let vx = variances(x)
    if x.elementsEqual(y) { return (vx.nngp, vx.ntk) }
    let vy = variances(y)
    // The dot product in the kernel's precision: float32 is the fused multiply-add chain over the
    // rows rounded to float32, in order, which is how the tiles define it.
    var dot = 0.0
    switch gramPrecision {
    case .float64: dot = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }
    case .float32:
      var c: Float = 0
      for (a, b) in zip(x, y) { c = c.addingProduct(Float(a), Float(b)) }
      dot = Double(c)
    }
    var s = dot / Double(d), t = 0.0
    for l in 0..<depth {
      (s, t) = dense(s, t, layer: l, inputDimension: d)
      let (sa, dot) = maps[l].pair(s, vx.layers[l], vy.layers[l])
      s = sa; t *= dot
    }
    let (nngp, ntk) = dense(s, t, layer: depth, inputDimension: d)
    return (nngp, ntk)
  }

  public func referenceEntry(_ x: [Double], _ y: [Double]) -> [Double] {
    let k = referenceKernel(x, y)
    return [k.ntk, k.nngp]
  }
}

// MARK: - Benchmark hooks

extension FullyConnected {
  /// Only the dot-product part of `computeTile` (into `scratch`), for benchmarks that split
  /// the time between the Gram product and the recursion.
  public func gramOnly(_ a: FCFeatures, rows: Range<Int>, _ b: FCFeatures, cols: Range<Int>,
                       scratch: UnsafeMutableBufferPointer<Double>, upper: Bool = false) {
    precondition(scratch.count >= scratchCount(a, rows: rows.count, cols: cols.count), "gramOnly: scratch too small")
    gramBlocks(a, rows: rows, b, cols: cols, scratch: scratch, upper: upper, float64: { _, _ in }, float32: { _, _ in })
  }
}
