#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GramMicroKernels

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

/// One activation family's pair map on `Lanes`, lane by lane the formulas of
/// `ActivationMap.pair`. A type per family, so that the recursion loop is specialised for it and
/// carries no switch.
@usableFromInline
protocol PairMap {
  func pair(_ s: Lanes, _ qi: Double, _ qj: Lanes) -> (Lanes, Lanes)
}

@usableFromInline
struct ABReLUPair: PairMap {
  @usableFromInline let angular: Double
  @usableFromInline let even: Double

  @inlinable @inline(__always)
  func pair(_ s: Lanes, _ qi: Double, _ qj: Lanes) -> (Lanes, Lanes) {
    let e = qi * qj - s * s
    let r = sqrt(max(e, Lanes(repeating: 0)))
    let theta = atan2(r, s)
    let dot = even - angular * theta
    return (angular * r + dot * s, dot)
  }
}

@usableFromInline
struct ErfPair: PairMap {
  @inlinable @inline(__always)
  func pair(_ s: Lanes, _ qi: Double, _ qj: Lanes) -> (Lanes, Lanes) {
    let e = (1 + 2 * qi) * (1 + 2 * qj) - 4 * s * s
    let r = sqrt(max(e, Lanes(repeating: 0)))
    return (2 / Double.pi * atan2(2 * s, r), 4 / Double.pi / r)
  }
}

@usableFromInline
struct IdentityPair: PairMap {
  @inlinable @inline(__always)
  func pair(_ s: Lanes, _ qi: Double, _ qj: Lanes) -> (Lanes, Lanes) { (s, Lanes(repeating: 1)) }
}

/// How the recursion reads `Lanes` of dot products from a block of Gram rows.
protocol GramRowScalar {
  static func lanes(_ p: UnsafePointer<Self>) -> Lanes
}

extension Double: GramRowScalar {
  @inline(__always) static func lanes(_ p: UnsafePointer<Double>) -> Lanes {
    UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
  }
}

extension Float: GramRowScalar {
  @inline(__always) static func lanes(_ p: UnsafePointer<Float>) -> Lanes {
    Lanes(UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self))
  }
}

extension FullyConnected {
  /// Dense layer `l` (0-based; `depth` is the readout) applied to `(Σ, Θ)`.
  ///
  /// ntk: Σ ← σw²Σ + σb², Θ ← Σ + σw²Θ.  standard (fan-in n): Θ ← nΣ + σw²Θ + [bias], Σ ← σw²Σ + σb².
  @inline(__always)
  func dense<V: SIMD>(_ s: V, _ t: V, layer: Int, inputDimension: Int) -> (V, V) where V.Scalar == Double {
    let w2 = weightVariance, b2 = biasVariance
    switch parameterization {
    case .ntk:
      let sNew = w2 * s + b2
      return (sNew, sNew + w2 * t)
    case .standard:
      let fanIn = Double(layer == 0 ? inputDimension : width)
      return (w2 * s + b2, fanIn * s + w2 * t + standardBiasTerm)
    }
  }

  /// Scalar `dense` (the same formulas on one pair).
  func dense(_ s: Double, _ t: Double, layer: Int, inputDimension: Int) -> (Double, Double) {
    let (sv, tv) = dense(SIMD2(s, 0), SIMD2(t, 0), layer: layer, inputDimension: inputDimension)
    return (sv[0], tv[0])
  }
}

// MARK: - GramKernel conformance

extension FullyConnected: GramKernel {
  public typealias Features = FCFeatures

  public func prepare(_ data: Matrix) -> FCFeatures {
    let d = data.cols, n = data.rows
    let stride = Swift.max(1, d)
    var x = [Double](repeating: 0, count: n * stride)
    var variance = [Double](repeating: 0, count: depth * n)
    var nngp = [Double](repeating: 0, count: n), ntk = [Double](repeating: 0, count: n)
    var keys = [UInt64](repeating: 0, count: n)
    let act = ActivationMap(activation)
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
        // The same chain the Gram product uses, so that the diagonal of the Gram block is q.
        let row = p.baseAddress! + i * stride
        var q = sequentialDot(row, row, depth: d) / Double(d)
        var t = 0.0
        for l in 0..<depth {
          (q, t) = dense(q, t, layer: l, inputDimension: d)
          variance[l * n + i] = q
          let (qa, dot) = act.diagonal(q)
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
  public func scratchCount(_ features: FCFeatures, rows: Int, cols: Int) -> Int {
    let np = GramShape.paddedCols(cols)
    return GramShape.blockRows * np + (depth + 2) * np + GramShape.workspace(cols: cols, depth: features.dimension)
  }

  /// The Gram product of a tile, one block of `GramShape.blockRows` rows at a time into the
  /// start of `scratch`, each block handed to `body` (with the block's rows, `ldc`) while it is
  /// in cache. `body` reads the block as `Double`s or as `Float`s, per `gramPrecision`.
  @inline(__always)
  func gramBlocks(_ a: FCFeatures, rows: Range<Int>, _ b: FCFeatures, cols: Range<Int>,
                  scratch: UnsafeMutableBufferPointer<Double>, upper: Bool,
                  float64 body64: (Range<Int>, UnsafePointer<Double>) -> Void,
                  float32 body32: (Range<Int>, UnsafePointer<Float>) -> Void) {
    let m = rows.count, n = cols.count
    let np = GramShape.paddedCols(n)
    let base = scratch.baseAddress!
    let workspace = base + GramShape.blockRows * np + (depth + 2) * np
    // The recursion of an upper block reads from column 4⌊i/4⌋ ≥ i − 3 in row i.
    let upperFrom: Int? = upper ? Lanes.scalarCount - 1 : nil
    switch gramPrecision {
    case .float64:
      a.x.withUnsafeBufferPointer { ap in
        b.x.withUnsafeBufferPointer { bp in
          gram(ap.baseAddress! + rows.lowerBound * a.stride, aStride: a.stride, rows: m,
               bp.baseAddress! + cols.lowerBound * b.stride, bStride: b.stride, cols: n,
               depth: a.dimension, into: base, ldc: np, workspace: workspace, upperFrom: upperFrom) { block in
            body64(block, UnsafePointer(base))
          }
        }
      }
    case .float32:
      let c = UnsafeMutableRawPointer(base).bindMemory(to: Float.self, capacity: GramShape.blockRows * np)
      let ws = UnsafeMutableRawPointer(workspace).bindMemory(
        to: Float.self, capacity: GramShape.workspace(cols: n, depth: a.dimension))
      a.x32.withUnsafeBufferPointer { ap in
        b.x32.withUnsafeBufferPointer { bp in
          gram(ap.baseAddress! + rows.lowerBound * a.stride, aStride: a.stride, rows: m,
               bp.baseAddress! + cols.lowerBound * b.stride, bStride: b.stride, cols: n,
               depth: a.dimension, into: c, ldc: np, workspace: ws, upperFrom: upperFrom) { block in
            body32(block, UnsafePointer(c))
          }
        }
      }
      UnsafeMutableRawPointer(base).bindMemory(to: Double.self, capacity: GramShape.blockRows * np)
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
            into out: TileOutput, scratch: UnsafeMutableBufferPointer<Double>, upper: Bool) {
    precondition(a.dimension == b.dimension, "computeTile: feature counts differ")
    precondition(a.gramPrecision == gramPrecision && b.gramPrecision == gramPrecision,
                 "computeTile: features prepared for another dot-product precision")
    let m = rows.count, n = cols.count, w = Lanes.scalarCount
    let np = GramShape.paddedCols(n), nv = (n + w - 1) / w * w
    precondition(scratch.count >= scratchCount(a, rows: m, cols: n), "computeTile: scratch too small")
    let qCols = scratch.baseAddress! + GramShape.blockRows * np
    let state = qCols + depth * np

    // Column variances per layer, padded with 1.
    for l in 0..<depth {
      for j in 0..<nv { qCols[l * np + j] = j < n ? b.layerVariance[l * b.rows + cols.lowerBound + j] : 1 }
    }

    // The recursion on each block of Gram rows, specialised for the activation and the
    // precision of the block.
    a.layerVariance.withUnsafeBufferPointer { qa in
      let recursion = RowRecursion(net: self, inputDimension: a.dimension, columns: n, qCols: qCols, paddedCols: np,
                                   rowVariance: qa.baseAddress! + rows.lowerBound, rowVarianceStride: a.rows,
                                   state: state, out: out, upper: upper)
      func run<M: PairMap>(_ map: M) {
        gramBlocks(a, rows: rows, b, cols: cols, scratch: scratch, upper: upper,
                   float64: { block, c in recursion.rows(block, c, ldc: np, map) },
                   float32: { block, c in recursion.rows(block, c, ldc: np, map) })
      }
      let act = ActivationMap(activation)
      switch act.kind {
      case .abReLU: run(ABReLUPair(angular: act.angular, even: act.even))
      case .erf: run(ErfPair())
      case .identity: run(IdentityPair())
      }
    }

    // Identical rows take the exact θ = 0 values.
    for i in 0..<m {
      let gi = rows.lowerBound + i
      let key = a.rowKey[gi]
      for j in (upper ? i : 0)..<n where b.rowKey[cols.lowerBound + j] == key && a.rowPointerEqual(gi, b, cols.lowerBound + j) {
        out.nngp[i * out.leadingDimension + j] = a.diagonalNNGP[gi]
        out.ntk[i * out.leadingDimension + j] = a.diagonalNTK[gi]
      }
    }
  }
}

/// The layer recursion over rows of dot products: per row, layer after layer over the whole row
/// (`Lanes` at a time, the state of the row in two L1-resident rows of scratch), the last layer
/// written to the tile output.
struct RowRecursion {
  let net: FullyConnected
  let inputDimension: Int
  /// Valid columns of the tile; `qCols` rows (one per layer) hold `paddedCols` values.
  let columns: Int
  let qCols: UnsafeMutablePointer<Double>
  let paddedCols: Int
  /// `rowVariance[l*rowVarianceStride + i]`: variance after layer `l` of tile row `i`.
  let rowVariance: UnsafePointer<Double>
  let rowVarianceStride: Int
  /// Two rows of `paddedCols`: Σ and Θ of the current row.
  let state: UnsafeMutablePointer<Double>
  let out: TileOutput
  let upper: Bool

  @inline(__always)
  func rows<S: GramRowScalar, M: PairMap>(_ block: Range<Int>, _ c: UnsafePointer<S>, ldc: Int, _ map: M) {
    let w = Lanes.scalarCount, n = columns, np = paddedCols, depth = net.depth, d = inputDimension
    let nv = (n + w - 1) / w * w
    let dd = Double(d)
    let sRow = state, tRow = state + np
    @inline(__always) func load(_ p: UnsafePointer<Double>) -> Lanes { UnsafeRawPointer(p).loadUnaligned(as: Lanes.self) }
    @inline(__always) func store(_ v: Lanes, _ p: UnsafeMutablePointer<Double>) {
      UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
    }
    // Two vectors per step: independent chains for the divider and square-root units.
    @inline(__always) func sweep(from j0: Int, _ body: (Int) -> Void) {
      var jb = j0
      while jb + 2 * w <= nv { body(jb); body(jb + w); jb += 2 * w }
      if jb < nv { body(jb) }
    }
    for i in block {
      let row = c + (i - block.lowerBound) * ldc
      let j0 = upper ? i / w * w : 0
      // Layer 0 from the dot products.
      var qi = rowVariance[i]
      var qj = UnsafePointer(qCols)
      sweep(from: j0) { jb in
        let (s, t) = net.dense(S.lanes(row + jb) / dd, Lanes(), layer: 0, inputDimension: d)
        let (sa, dot) = map.pair(s, qi, load(qj + jb))
        store(sa, sRow + jb)
        store(t * dot, tRow + jb)
      }
      for l in stride(from: 1, to: depth, by: 1) {
        qi = rowVariance[l * rowVarianceStride + i]
        qj = UnsafePointer(qCols + l * np)
        sweep(from: j0) { jb in
          let (s, t) = net.dense(load(sRow + jb), load(tRow + jb), layer: l, inputDimension: d)
          let (sa, dot) = map.pair(s, qi, load(qj + jb))
          store(sa, sRow + jb)
          store(t * dot, tRow + jb)
        }
      }
      // The readout layer, into the tile.
      let o = i * out.leadingDimension
      sweep(from: j0) { jb in
        let (s, t) = net.dense(load(sRow + jb), load(tRow + jb), layer: depth, inputDimension: d)
        if jb + w <= n {
          store(s, out.nngp + o + jb)
          store(t, out.ntk + o + jb)
        } else {
          for lane in 0..<(n - jb) {
            out.nngp[o + jb + lane] = s[lane]
            out.ntk[o + jb + lane] = t[lane]
          }
        }
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
    let act = ActivationMap(activation)
    func variances(_ v: some Collection<Double>) -> (layers: [Double], nngp: Double, ntk: Double) {
      var q = v.reduce(0) { $0 + $1 * $1 } / Double(d), t = 0.0
      var layers: [Double] = []
      for l in 0..<depth {
        (q, t) = dense(q, t, layer: l, inputDimension: d)
        layers.append(q)
        let (qa, dot) = act.diagonal(q)
        q = qa; t *= dot
      }
      (q, t) = dense(q, t, layer: depth, inputDimension: d)
      return (layers, q, t)
    }
    let vx = variances(x)
    if x.elementsEqual(y) { return (vx.nngp, vx.ntk) }
    let vy = variances(y)
    var s = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } / Double(d), t = 0.0
    for l in 0..<depth {
      (s, t) = dense(s, t, layer: l, inputDimension: d)
      let (sa, dot) = act.pair(s, vx.layers[l], vy.layers[l])
      s = sa; t *= dot
    }
    let (nngp, ntk) = dense(s, t, layer: depth, inputDimension: d)
    return (nngp, ntk)
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
