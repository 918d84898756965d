// The fully-connected kernel recursion over rows of dot products, generic over the vector type
// so that each instruction set gets its own instantiation (SIMD4<Double> in `GramKernels` for
// AVX2, SIMD8<Double> in `GramMicroKernelsAVX512`). Every operation is lane-wise and the same
// in every instantiation — correctly rounded +, −, ×, ÷, √, explicit fused multiply-adds,
// min/max, selects — so all of them give the same bits.
import CSIMDSupport

/// The lane-wise operations the standard library does not lower to single vector
/// instructions (`squareRoot()` of a SIMD type calls libm per lane; `pointwiseMax` is an
/// out-of-line generic call), for vectors of doubles or floats.
public protocol LaneVector: SIMD where Scalar: BinaryFloatingPoint {
  static func sqrt(_ x: Self) -> Self
  static func max(_ x: Self, _ y: Self) -> Self
  static func min(_ x: Self, _ y: Self) -> Self
  /// `b` in the lanes where `x > y`, else `a`: one compare and one blend (the standard
  /// library's `.>` and `replacing(with:where:)` become per-lane code on 8-lane vectors).
  static func select(_ a: Self, _ b: Self, where x: Self, isGreaterThan y: Self) -> Self
}

/// The scalars of lane vectors: each supplies the builtins of its 4- and 8-lane vectors.
public protocol LaneScalar: BinaryFloatingPoint & SIMDScalar {
  static func sqrt(_ x: SIMD4<Self>) -> SIMD4<Self>
  static func max(_ x: SIMD4<Self>, _ y: SIMD4<Self>) -> SIMD4<Self>
  static func min(_ x: SIMD4<Self>, _ y: SIMD4<Self>) -> SIMD4<Self>
  static func select(_ a: SIMD4<Self>, _ b: SIMD4<Self>, where x: SIMD4<Self>, isGreaterThan y: SIMD4<Self>) -> SIMD4<Self>
  static func sqrt(_ x: SIMD8<Self>) -> SIMD8<Self>
  static func max(_ x: SIMD8<Self>, _ y: SIMD8<Self>) -> SIMD8<Self>
  static func min(_ x: SIMD8<Self>, _ y: SIMD8<Self>) -> SIMD8<Self>
  static func select(_ a: SIMD8<Self>, _ b: SIMD8<Self>, where x: SIMD8<Self>, isGreaterThan y: SIMD8<Self>) -> SIMD8<Self>
}

extension Double: LaneScalar {
  @inlinable @inline(__always) public static func sqrt(_ x: SIMD4<Double>) -> SIMD4<Double> { ntkgram_sqrt4(x) }
  @inlinable @inline(__always) public static func max(_ x: SIMD4<Double>, _ y: SIMD4<Double>) -> SIMD4<Double> { ntkgram_max4(x, y) }
  @inlinable @inline(__always) public static func min(_ x: SIMD4<Double>, _ y: SIMD4<Double>) -> SIMD4<Double> { ntkgram_min4(x, y) }
  @inlinable @inline(__always) public static func select(_ a: SIMD4<Double>, _ b: SIMD4<Double>, where x: SIMD4<Double>,
                                                        isGreaterThan y: SIMD4<Double>) -> SIMD4<Double> {
    ntkgram_select_greater4(a, b, x, y)
  }
  @inlinable @inline(__always) public static func sqrt(_ x: SIMD8<Double>) -> SIMD8<Double> { ntkgram_sqrt8(x) }
  @inlinable @inline(__always) public static func max(_ x: SIMD8<Double>, _ y: SIMD8<Double>) -> SIMD8<Double> { ntkgram_max8(x, y) }
  @inlinable @inline(__always) public static func min(_ x: SIMD8<Double>, _ y: SIMD8<Double>) -> SIMD8<Double> { ntkgram_min8(x, y) }
  @inlinable @inline(__always) public static func select(_ a: SIMD8<Double>, _ b: SIMD8<Double>, where x: SIMD8<Double>,
                                                        isGreaterThan y: SIMD8<Double>) -> SIMD8<Double> {
    ntkgram_select_greater8(a, b, x, y)
  }
}

extension Float: LaneScalar {
  @inlinable @inline(__always) public static func sqrt(_ x: SIMD4<Float>) -> SIMD4<Float> { ntkgram_sqrt4f(x) }
  @inlinable @inline(__always) public static func max(_ x: SIMD4<Float>, _ y: SIMD4<Float>) -> SIMD4<Float> { ntkgram_max4f(x, y) }
  @inlinable @inline(__always) public static func min(_ x: SIMD4<Float>, _ y: SIMD4<Float>) -> SIMD4<Float> { ntkgram_min4f(x, y) }
  @inlinable @inline(__always) public static func select(_ a: SIMD4<Float>, _ b: SIMD4<Float>, where x: SIMD4<Float>,
                                                        isGreaterThan y: SIMD4<Float>) -> SIMD4<Float> {
    ntkgram_select_greater4f(a, b, x, y)
  }
  @inlinable @inline(__always) public static func sqrt(_ x: SIMD8<Float>) -> SIMD8<Float> { ntkgram_sqrt8f(x) }
  @inlinable @inline(__always) public static func max(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> { ntkgram_max8f(x, y) }
  @inlinable @inline(__always) public static func min(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> { ntkgram_min8f(x, y) }
  @inlinable @inline(__always) public static func select(_ a: SIMD8<Float>, _ b: SIMD8<Float>, where x: SIMD8<Float>,
                                                        isGreaterThan y: SIMD8<Float>) -> SIMD8<Float> {
    ntkgram_select_greater8f(a, b, x, y)
  }
}

extension SIMD4: LaneVector where Scalar: LaneScalar {
  @inlinable @inline(__always) public static func sqrt(_ x: Self) -> Self { Scalar.sqrt(x) }
  @inlinable @inline(__always) public static func max(_ x: Self, _ y: Self) -> Self { Scalar.max(x, y) }
  @inlinable @inline(__always) public static func min(_ x: Self, _ y: Self) -> Self { Scalar.min(x, y) }
  @inlinable @inline(__always) public static func select(_ a: Self, _ b: Self, where x: Self, isGreaterThan y: Self) -> Self {
    Scalar.select(a, b, where: x, isGreaterThan: y)
  }
}

extension SIMD8: LaneVector where Scalar: LaneScalar {
  @inlinable @inline(__always) public static func sqrt(_ x: Self) -> Self { Scalar.sqrt(x) }
  @inlinable @inline(__always) public static func max(_ x: Self, _ y: Self) -> Self { Scalar.max(x, y) }
  @inlinable @inline(__always) public static func min(_ x: Self, _ y: Self) -> Self { Scalar.min(x, y) }
  @inlinable @inline(__always) public static func select(_ a: Self, _ b: Self, where x: Self, isGreaterThan y: Self) -> Self {
    Scalar.select(a, b, where: x, isGreaterThan: y)
  }
}

/// The vectors of the float64 recursions.
public protocol RecursionVector: LaneVector where Scalar == Double {}
extension SIMD4: RecursionVector where Scalar == Double {}
extension SIMD8: RecursionVector where Scalar == Double {}

public let piOverTwo = 1.5707963267948966192313216916397514
public let piOverFour = 0.78539816339744830961566084581987572
public let tanPiOverEight = 0.41421356237309504880168872420969808

/// `atan(z)` for `|z| ≤ tan(π/8)` as `z·P(z²)/Q(z²)`: the (4, 5) rational approximation
/// #5077 of Hart & Cheney, *Computer Approximations* (1968), 19.56 significant digits.
///
/// Float lanes take `z·P(z²)` instead, P of degree 5 fitted on Chebyshev nodes of
/// `[0, tan²(π/8)]` (error 6e-10, below float's rounding; evaluated in float: 1.5 ulp): no
/// division.
@inlinable @inline(__always)
public func atanReduced<V: LaneVector>(_ z: V) -> V {
  @inline(__always) func step(_ acc: V, _ x: V, _ c: V.Scalar) -> V { V(repeating: c).addingProduct(acc, x) }
  let z2 = z * z
  if V.Scalar.self == Float.self {
    var p = step(V(repeating: -0.06033241700692681), z2, 0.10572814475441625)
    p = step(p, z2, -0.14239982918737895)
    p = step(p, z2, 0.19998210797569232)
    p = step(p, z2, -0.33333307493429887)
    p = step(p, z2, 0.9999999993921002)
    return z * p
  }
  var p = step(V(repeating: 16.1536412982230228262), z2, 268.42548195503973794141)
  p = step(p, z2, 1153.0293515404850115428136)
  p = step(p, z2, 1780.40631643319697105464587)
  p = step(p, z2, 896.78597403663861959987488)
  var q = z2 + 58.95697050844462222791
  q = step(q, z2, 536.265374031215315104235)
  q = step(q, z2, 1666.7838148816337184521798)
  q = step(q, z2, 2079.33497444540981287275926)
  q = step(q, z2, 896.78597403663861962481162)
  return z * p / q
}

/// `atan2(y, x)` lane by lane, in `[−π, π]`, with `atan2(0, 0) = 0`.
///
/// Reduction: with `n = min(|y|,|x|)`, `m = max(|y|,|x|)`, `atan(n/m)` is `atan(n/m)` when
/// `n ≤ tan(π/8)·m`, else `π/4 + atan((n−m)/(n+m))`; then undo the octant and quadrant. Two
/// divisions (the reduced argument and the rational function). Maximum error ≈ 2 ulp of π
/// (measured in the tests against libm). The float instantiation rounds the same constants.
@inlinable @inline(__always)
public func vectorAtan2<V: LaneVector>(_ y: V, _ x: V) -> V {
  let zero = V(repeating: 0)
  let ay = V.max(y, -y)
  let ax = V.max(x, -x)
  let small = V.min(ay, ax), large = V.max(ay, ax)
  let bound = V.Scalar(tanPiOverEight) * large
  let num = V.select(small, small - large, where: small, isGreaterThan: bound)
  let den = V.select(large, small + large, where: small, isGreaterThan: bound)
  // 0/0 (both inputs zero) is 0; otherwise den > 0.
  let reduced = num / V.select(V(repeating: 1), den, where: den, isGreaterThan: zero)
  var r = atanReduced(reduced) + V.select(zero, V(repeating: V.Scalar(piOverFour)), where: small, isGreaterThan: bound)
  r = V.select(r, V.Scalar(piOverTwo) - r, where: ay, isGreaterThan: ax)
  r = V.select(r, 2 * V.Scalar(piOverTwo) - r, where: zero, isGreaterThan: x)
  return V.select(r, -r, where: zero, isGreaterThan: y)
}

/// `vectorAtan2(y, x)` for `y ≥ 0` (a square root): the same values without the operations
/// that only matter for negative `y` (its absolute value and the last reflection).
@inlinable @inline(__always)
public func vectorAtan2<V: LaneVector>(nonNegative y: V, _ x: V) -> V {
  let zero = V(repeating: 0)
  let ax = V.max(x, -x)
  let small = V.min(y, ax), large = V.max(y, ax)
  let bound = V.Scalar(tanPiOverEight) * large
  let num = V.select(small, small - large, where: small, isGreaterThan: bound)
  let den = V.select(large, small + large, where: small, isGreaterThan: bound)
  let reduced = num / V.select(V(repeating: 1), den, where: den, isGreaterThan: zero)
  var r = atanReduced(reduced) + V.select(zero, V(repeating: V.Scalar(piOverFour)), where: small, isGreaterThan: bound)
  r = V.select(r, V.Scalar(piOverTwo) - r, where: y, isGreaterThan: ax)
  return V.select(r, 2 * V.Scalar(piOverTwo) - r, where: zero, isGreaterThan: x)
}

/// One activation family's map `(Σ, q, q′) → (Σ′, Σ̇)`, lane by lane (the formulas and the
/// scalar reference are in `GramKernels/FullyConnected+Kernel.swift`). A type per family, so that
/// the recursion loop is specialised for it and carries no switch.
public protocol PairMap {
  func pair<V: RecursionVector>(_ s: V, _ qi: Double, _ qj: V) -> (V, V)
}

/// ABReLU(a, b): `angular = (a−b)²/(2π)`, `even = (a²+b²)/2`.
@frozen
public struct ABReLUPair: PairMap {
  public let angular: Double
  public let even: Double

  @inlinable public init(angular: Double, even: Double) {
    self.angular = angular
    self.even = even
  }

  /// One row variance for every lane: the lane-wise map with it broadcast (the same operations).
  @inlinable @inline(__always)
  public func pair<V: RecursionVector>(_ s: V, _ qi: Double, _ qj: V) -> (V, V) { pair(s, lanes: V(repeating: qi), qj) }
}

@frozen
public struct ErfPair: PairMap {
  @inlinable public init() {}

  @inlinable @inline(__always)
  public func pair<V: RecursionVector>(_ s: V, _ qi: Double, _ qj: V) -> (V, V) { pair(s, lanes: V(repeating: qi), qj) }
}

@frozen
public struct IdentityPair: PairMap {
  @inlinable public init() {}

  @inlinable @inline(__always)
  public func pair<V: RecursionVector>(_ s: V, _ qi: Double, _ qj: V) -> (V, V) { (s, V(repeating: 1)) }
}

/// One dense layer of a fully-connected network, mapping `(Σ, Θ)` to
///   ntk:      Σ′ = σw²Σ + σb²,  Θ′ = Σ′ + σw²Θ;
///   standard: Σ′ = σw²Σ + σb²,  Θ′ = n Σ + σw²Θ + [bias]   (n: the layer's fan-in).
@frozen
public struct DenseLayer: Sendable {
  public let weightVariance: Double
  public let biasVariance: Double
  /// nil: ntk parameterization; else the standard one's fan-in (the input's features for the
  /// first layer, the previous dense layer's width after it).
  public let standardFanIn: Double?
  /// The NTK term the bias gradient adds under the standard parameterization (0 without bias).
  public let standardBiasTerm: Double

  @inlinable
  public init(weightVariance: Double, biasVariance: Double, standardFanIn: Double?, standardBiasTerm: Double) {
    self.weightVariance = weightVariance
    self.biasVariance = biasVariance
    self.standardFanIn = standardFanIn
    self.standardBiasTerm = standardBiasTerm
  }

  @inlinable @inline(__always)
  public func apply<V: SIMD>(_ s: V, _ t: V) -> (V, V) where V.Scalar == Double {
    let w2 = weightVariance, b2 = biasVariance
    if let fanIn = standardFanIn {
      return (w2 * s + b2, fanIn * s + w2 * t + standardBiasTerm)
    }
    let sNew = w2 * s + b2
    return (sNew, sNew + w2 * t)
  }
}

/// How the recursion reads a vector of dot products from a block of Gram rows.
public protocol GramRowScalar {
  static func load<V: RecursionVector>(_: V.Type, _ p: UnsafePointer<Self>) -> V
}

extension Double: GramRowScalar {
  @inlinable @inline(__always)
  public static func load<V: RecursionVector>(_: V.Type, _ p: UnsafePointer<Double>) -> V {
    UnsafeRawPointer(p).loadUnaligned(as: V.self)
  }
}

extension Float: GramRowScalar {
  @inlinable @inline(__always)
  public static func load<V: RecursionVector>(_: V.Type, _ p: UnsafePointer<Float>) -> V {
    var v = V()
    for l in 0..<V.scalarCount { v[l] = Double(p[l]) }
    return v
  }
}

/// The layer recursion over rows of dot products: per row, layer after layer over the whole
/// row (a vector at a time, the state of the row in two rows of scratch that stay in L1), the
/// readout layer written to the output rows. Every hidden layer has its own dense parameters and
/// activation (the pair map is chosen once per row and layer, so each sweep is specialised).
@frozen
public struct RowRecursion {
  /// `depth + 1` dense layers (the last is the readout) and `depth` pair maps between them.
  public let layers: UnsafePointer<DenseLayer>
  public let maps: UnsafePointer<PairMapKind>
  public let depth: Int
  /// The input's feature count: layer 0 starts from `x·y / inputDimension`.
  public let inputDimension: Double
  /// Valid columns; `qCols` rows (one per hidden layer) and the state rows hold `paddedCols`
  /// values, `qCols` padded with 1 past `columns`.
  public let columns: Int
  public let qCols: UnsafePointer<Double>
  public let paddedCols: Int
  /// `rowVariance[l*rowVarianceStride + i]`: variance after layer `l` of row `i`.
  public let rowVariance: UnsafePointer<Double>
  public let rowVarianceStride: Int
  /// Two rows of `paddedCols`: Σ and Θ of the current row.
  public let state: UnsafeMutablePointer<Double>
  public let nngp: UnsafeMutablePointer<Double>
  public let ntk: UnsafeMutablePointer<Double>
  public let leadingDimension: Int
  /// Upper rows: row `i` starts at column `w⌊i/w⌋` (≥ i − w + 1), w the vector width.
  public let upper: Bool

  @inlinable
  public init(layers: UnsafePointer<DenseLayer>, maps: UnsafePointer<PairMapKind>, depth: Int, inputDimension: Double,
              columns: Int, qCols: UnsafePointer<Double>, paddedCols: Int,
              rowVariance: UnsafePointer<Double>, rowVarianceStride: Int, state: UnsafeMutablePointer<Double>,
              nngp: UnsafeMutablePointer<Double>, ntk: UnsafeMutablePointer<Double>, leadingDimension: Int, upper: Bool) {
    self.layers = layers
    self.maps = maps
    self.depth = depth
    self.inputDimension = inputDimension
    self.columns = columns
    self.qCols = qCols
    self.paddedCols = paddedCols
    self.rowVariance = rowVariance
    self.rowVarianceStride = rowVarianceStride
    self.state = state
    self.nngp = nngp
    self.ntk = ntk
    self.leadingDimension = leadingDimension
    self.upper = upper
  }

  /// Two vectors per step: independent chains for the divider and square-root units.
  @inlinable @inline(__always)
  func sweep<V: RecursionVector>(_: V.Type, from j0: Int, _ body: (Int) -> Void) {
    let w = V.scalarCount
    let nv = (columns + w - 1) / w * w
    var jb = j0
    while jb + 2 * w <= nv { body(jb); body(jb + w); jb += 2 * w }
    if jb < nv { body(jb) }
  }

  /// Hidden layer `l` of row `i` (dense, then the pair map), into the state rows; layer 0
  /// reads the dot products `row`, the others the state.
  @inlinable @inline(__always)
  func hidden<V: RecursionVector, S: GramRowScalar, M: PairMap>(
    _: V.Type, _ l: Int, row i: Int, _ row: UnsafePointer<S>, from j0: Int, _ map: M
  ) {
    let np = paddedCols
    let sRow = state, tRow = state + np
    let layer = layers[l]
    let qi = rowVariance[l * rowVarianceStride + i]
    let qj = qCols + l * np
    @inline(__always) func load(_ p: UnsafePointer<Double>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Double>) {
      UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
    if l == 0 {
      let dd = inputDimension
      sweep(V.self, from: j0) { jb in
        let (s, t) = layer.apply(S.load(V.self, row + jb) / dd, V())
        let (sa, dot) = map.pair(s, qi, load(qj + jb))
        store(sa, sRow + jb)
        store(t * dot, tRow + jb)
      }
    } else {
      sweep(V.self, from: j0) { jb in
        let (s, t) = layer.apply(load(sRow + jb), load(tRow + jb))
        let (sa, dot) = map.pair(s, qi, load(qj + jb))
        store(sa, sRow + jb)
        store(t * dot, tRow + jb)
      }
    }
  }

  /// Rows `block` (tile rows), their dot products at `c + (i − block.lowerBound)*ldc`.
  @inlinable @inline(__always)
  public func rows<V: RecursionVector, S: GramRowScalar>(_: V.Type, _ block: Range<Int>, _ c: UnsafePointer<S>, ldc: Int) {
    let w = V.scalarCount, n = columns, np = paddedCols
    let nv = (n + w - 1) / w * w
    precondition(nv <= np && nv <= ldc, "RowRecursion: rows too short for the vector width")
    let sRow = state, tRow = state + np
    @inline(__always) func load(_ p: UnsafePointer<Double>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Double>) {
      UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
    for i in block {
      let row = c + (i - block.lowerBound) * ldc
      let j0 = upper ? i / w * w : 0
      for l in 0..<depth {
        switch maps[l] {
        case .abReLU(let map): hidden(V.self, l, row: i, row, from: j0, map)
        case .erf: hidden(V.self, l, row: i, row, from: j0, ErfPair())
        case .identity: hidden(V.self, l, row: i, row, from: j0, IdentityPair())
        }
      }
      // The readout layer, into the output (straight from the dot products without hidden layers).
      let o = i * leadingDimension
      let readout = layers[depth]
      let dd = inputDimension
      let noHidden = depth == 0
      sweep(V.self, from: j0) { jb in
        let (s, t) = noHidden ? readout.apply(S.load(V.self, row + jb) / dd, V())
                              : readout.apply(load(sRow + jb), load(tRow + jb))
        if jb + w <= n {
          store(s, nngp + o + jb)
          store(t, ntk + o + jb)
        } else {
          for lane in 0..<(n - jb) {
            nngp[o + jb + lane] = s[lane]
            ntk[o + jb + lane] = t[lane]
          }
        }
      }
    }
  }
}

/// The pair map of one activation, chosen once per row and layer.
public enum PairMapKind: Sendable {
  case abReLU(ABReLUPair)
  case erf
  case identity
}

extension ABReLUPair: Sendable {}

// MARK: - Pair maps over rows of covariances (the convolutional kernels)

extension ABReLUPair {
  /// `pair` with a vector of row variances (lane-wise the same operations), on doubles or
  /// floats (the constants rounded to the lanes' type).
  @inlinable @inline(__always)
  public func pair<V: LaneVector>(_ s: V, lanes qi: V, _ qj: V) -> (V, V) {
    let e = qi * qj - s * s
    let r = V.sqrt(V.max(e, V(repeating: 0)))
    let theta = vectorAtan2(nonNegative: r, s)
    let dot = V.Scalar(even) - V.Scalar(angular) * theta
    return (V.Scalar(angular) * r + dot * s, dot)
  }
}

extension ErfPair {
  @inlinable @inline(__always)
  public func pair<V: LaneVector>(_ s: V, lanes qi: V, _ qj: V) -> (V, V) {
    let one = V(repeating: 1), two = V(repeating: 2), four = V(repeating: 4)
    let pi: V = one + two * qi, pj: V = one + two * qj
    let s4: V = four * s * s
    let e: V = pi * pj - s4
    let r = V.sqrt(V.max(e, V(repeating: 0)))
    return (V.Scalar(2 / Double.pi) * vectorAtan2(2 * s, r), V.Scalar(4 / Double.pi) / r)
  }
}

/// Applies an activation's pair map to `n` covariances in place: `s[j] ← Σ′`, `t[j] ← t[j]·Σ̇`,
/// with row variances `qi[j]` (`qiStride` 0: one variance for the whole row) and column
/// variances `qj[j]`. The last partial vector goes through a padded copy, so that every entry
/// takes the same lane-wise operations whatever the vector width: AVX2 and AVX-512 give the
/// same bits.
@inlinable @inline(__always)
public func pairMapRow<V: RecursionVector>(_: V.Type, _ kind: PairMapKind, s: UnsafeMutablePointer<Double>,
                                           t: UnsafeMutablePointer<Double>, count n: Int,
                                           qi: UnsafePointer<Double>, qiStride: Int, qj: UnsafePointer<Double>) {
  switch kind {
  case .abReLU(let map): pairMapRow(V.self, s: s, t: t, count: n, qi: qi, qiStride: qiStride, qj: qj) { map.pair($0, lanes: $1, $2) }
  case .erf: pairMapRow(V.self, s: s, t: t, count: n, qi: qi, qiStride: qiStride, qj: qj) { ErfPair().pair($0, lanes: $1, $2) }
  case .identity: return
  }
}

@inlinable @inline(__always)
func pairMapRow<V: RecursionVector>(_: V.Type, s: UnsafeMutablePointer<Double>, t: UnsafeMutablePointer<Double>, count n: Int,
                                    qi: UnsafePointer<Double>, qiStride: Int, qj: UnsafePointer<Double>,
                                    _ map: (V, V, V) -> (V, V)) {
  let w = V.scalarCount
  @inline(__always) func load(_ p: UnsafePointer<Double>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
  @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Double>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
  var j = 0
  while j + w <= n {
    let q = qiStride == 0 ? V(repeating: qi[0]) : load(qi + j)
    let (sa, dot) = map(load(s + j), q, load(qj + j))
    store(sa, s + j)
    store(load(t + j) * dot, t + j)
    j += w
  }
  if j < n {
    var sv = V(repeating: 0), tv = V(repeating: 0), qv = V(repeating: 1), qjv = V(repeating: 1)
    for l in 0..<(n - j) {
      sv[l] = s[j + l]; tv[l] = t[j + l]; qjv[l] = qj[j + l]
      qv[l] = qiStride == 0 ? qi[0] : qi[j + l]
    }
    let (sa, dot) = map(sv, qv, qjv)
    let tn = tv * dot
    for l in 0..<(n - j) { s[j + l] = sa[l]; t[j + l] = tn[l] }
  }
}
