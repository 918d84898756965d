import GramMicroKernels

// Vectorised elementary functions for the kernel recursions.
//
// `atan2` and `asin` on SIMD types are not vectorised by the standard library (they run lane
// by lane through libm), so the recursion uses its own branch-free `atan2` below. Its accuracy
// against libm over the whole input range is checked in `VectorMathTests`.

/// The vector type the recursions run on: four doubles, one AVX2 register.
public typealias Lanes = SIMD4<Double>

/// `atan2(y, x)` lane by lane (`vectorAtan2` of `GramMicroKernels`), in `[−π, π]`, with
/// `atan2(0, 0) = 0`. Maximum error ≈ 2 ulp of π (measured in the tests against libm).
@inlinable @inline(__always)
public func atan2(_ y: Lanes, _ x: Lanes) -> Lanes { vectorAtan2(y, x) }

/// Lane-wise square root, correctly rounded, as one vector instruction (the standard
/// library's `squareRoot()` of a SIMD type calls libm once per lane).
@inlinable @inline(__always)
public func sqrt(_ x: Lanes) -> Lanes { Lanes.sqrt(x) }

/// Lane-wise maximum (`vmaxpd`; the standard library's `pointwiseMax` is an out-of-line call).
@inlinable @inline(__always)
public func max(_ x: Lanes, _ y: Lanes) -> Lanes { Lanes.max(x, y) }

/// Lane-wise minimum (`vminpd`).
@inlinable @inline(__always)
public func min(_ x: Lanes, _ y: Lanes) -> Lanes { Lanes.min(x, y) }
