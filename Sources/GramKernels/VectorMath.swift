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
  let z2 = z * z
  var p = Lanes(repeating: 16.1536412982230228262) * z2 + 268.42548195503973794141
  p = p * z2 + 1153.0293515404850115428136
  p = p * z2 + 1780.40631643319697105464587
  p = p * z2 + 896.78597403663861959987488
  var q = z2 + 58.95697050844462222791
  q = q * z2 + 536.265374031215315104235
  q = q * z2 + 1666.7838148816337184521798
  q = q * z2 + 2079.33497444540981287275926
  q = q * z2 + 896.78597403663861962481162
  return z * p / q
}

/// `atan2(y, x)` lane by lane, in `[−π, π]`, with `atan2(0, 0) = 0`.
///
/// Reduction: `r = min(|y|,|x|)/max(|y|,|x|) ∈ [0, 1]`; above `tan(π/8)` use
/// `atan(r) = π/4 + atan((r−1)/(r+1))`; then undo the octant and quadrant. Maximum error
/// ≈ 2 ulp of π (measured in the tests against libm).
@inlinable @inline(__always)
public func atan2(_ y: Lanes, _ x: Lanes) -> Lanes {
  let ay = pointwiseMax(y, -y)
  let ax = pointwiseMax(x, -x)
  let swap = ay .> ax
  let num = ay.replacing(with: ax, where: swap)
  let den = ax.replacing(with: ay, where: swap)
  let zeroDen = den .== 0
  let ratio = (num / den.replacing(with: 1, where: zeroDen)).replacing(with: 0, where: zeroDen)
  let big = ratio .> tanPiOverEight
  let reduced = ratio.replacing(with: (ratio - 1) / (ratio + 1), where: big)
  var r = atanReduced(reduced) + Lanes(repeating: 0).replacing(with: piOverFour, where: big)
  r = r.replacing(with: piOverTwo - r, where: swap)
  r = r.replacing(with: 2 * piOverTwo - r, where: x .< 0)
  return r.replacing(with: -r, where: y .< 0)
}

/// Lane-wise square root.
@inlinable @inline(__always)
public func sqrt(_ x: Lanes) -> Lanes { x.squareRoot() }
