#ifndef NTKGRAM_VECTOR_BUILTINS_H
#define NTKGRAM_VECTOR_BUILTINS_H

// Vector operations the Swift standard library does not lower to single vector instructions:
// `SIMD4<Double>.squareRoot()` runs lane by lane through libm's `sqrt`, and `pointwiseMax`/
// `pointwiseMin` are out-of-line generic calls. These compile, inlined into the Swift caller, to
// one `vsqrtpd` (correctly rounded, like the scalar `sqrt`), `vmaxpd`, `vminpd`.
// Swift imports `ntkgram_double4` as `SIMD4<Double>`.

typedef double ntkgram_double4 __attribute__((ext_vector_type(4)));

/// Lane-wise correctly rounded square root.
static inline __attribute__((always_inline)) ntkgram_double4 ntkgram_sqrt4(ntkgram_double4 x) {
  return __builtin_elementwise_sqrt(x);
}

/// Lane-wise maximum and minimum (of non-NaN lanes; NaN handling is unspecified).
static inline __attribute__((always_inline)) ntkgram_double4 ntkgram_max4(ntkgram_double4 x, ntkgram_double4 y) {
  return __builtin_elementwise_max(x, y);
}

static inline __attribute__((always_inline)) ntkgram_double4 ntkgram_min4(ntkgram_double4 x, ntkgram_double4 y) {
  return __builtin_elementwise_min(x, y);
}

#endif
