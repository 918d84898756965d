import CSIMDSupport

// Vectorised elementary functions for the kernel recursions.
//
// `atan2` and `asin` on SIMD types are not vectorised by the standard library (they run lane
// by lane through libm), so the recursion uses its own branch-free `atan2` below. Its accuracy
// against libm over the whole input range is checked in `VectorMathTests`.

/// The vector type the recursions run on: four doubles, one AVX2 register.
public typealias Lanes = SIMD4<Double>

@usableFromInline let piOverTwo = 1.5707963267948966192313216916397514
@usableFromInline let piOverFour = 0.78539816339744830961566084581987572
@usableFromInline let tanPiOverEight = 0.41421356237309504880168872420969808

/// `atan(z)` for `|z| ≤ tan(π/8)` as `z·P(z²)/Q(z²)`: the (4, 5) rational approximation
/// #5077 of Hart & Cheney, *Computer Approximations* (1968), 19.56 significant digits.
@inlinable @inline(__always)
func atanReduced(_ z: Lanes) -> Lanes {
  @inline(__always) func step(_ acc: Lanes, _ x: Lanes, _ c: Double) -> Lanes { Lanes(repeating: c).addingProduct(acc, x) }
  let z2 = z * z
  var p = step(Lanes(repeating: 16.1536412982230228262), z2, 268.42548195503973794141)
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
/// (measured in the tests against libm).
@inlinable @inline(__always)
public func atan2(_ y: Lanes, _ x: Lanes) -> Lanes {
  let ay = max(y, -y)
  let ax = max(x, -x)
  let swap = ay .> ax
  let small = min(ay, ax), large = max(ay, ax)
  let big = small .> tanPiOverEight * large
  let num = small.replacing(with: small - large, where: big)
  let den = large.replacing(with: small + large, where: big)
  // 0/0 (both inputs zero) is 0; otherwise den > 0.
  let reduced = num / den.replacing(with: 1, where: den .== 0)
  var r = atanReduced(reduced) + Lanes(repeating: 0).replacing(with: piOverFour, where: big)
  r = r.replacing(with: piOverTwo - r, where: swap)
  r = r.replacing(with: 2 * piOverTwo - r, where: x .< 0)
  return r.replacing(with: -r, where: y .< 0)
}

/// Lane-wise square root, correctly rounded, as one vector instruction (the standard
/// library's `squareRoot()` of a SIMD type calls libm once per lane).
@inlinable @inline(__always)
public func sqrt(_ x: Lanes) -> Lanes { ntkgram_sqrt4(x) }

/// Lane-wise maximum (`vmaxpd`; the standard library's `pointwiseMax` is an out-of-line call).
@inlinable @inline(__always)
public func max(_ x: Lanes, _ y: Lanes) -> Lanes { ntkgram_max4(x, y) }

/// Lane-wise minimum (`vminpd`).
@inlinable @inline(__always)
public func min(_ x: Lanes, _ y: Lanes) -> Lanes { ntkgram_min4(x, y) }
