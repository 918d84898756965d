// The vector type of the AVX2 recursion. The vectorised elementary functions (`vectorAtan2`,
// and √, min, max, compare-and-blend as single instructions) are generic, in
// `GramMicroKernels/Recursion.swift`; their accuracy against libm over the whole input range is
// checked in `VectorMathTests`.

/// Four doubles, one AVX2 register.
public typealias Lanes = SIMD4<Double>
