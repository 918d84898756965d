#ifndef NTKGRAM_VECTOR_BUILTINS_H
#define NTKGRAM_VECTOR_BUILTINS_H

// Vector operations the Swift standard library does not lower to single vector instructions:
// `SIMD4<Double>.squareRoot()` runs lane by lane through libm's `sqrt`, and `pointwiseMax`/
// `pointwiseMin` are out-of-line generic calls. These compile, inlined into the Swift caller, to
// one `vsqrtpd` (correctly rounded, like the scalar `sqrt`), `vmaxpd`, `vminpd`.
// Swift imports `ntkgram_double4` as `SIMD4<Double>`, `ntkgram_double8` as `SIMD8<Double>`;
// the instructions are those of the calling module's flags (AVX2 ymm, AVX-512 zmm).

typedef double ntkgram_double4 __attribute__((ext_vector_type(4)));
typedef double ntkgram_double8 __attribute__((ext_vector_type(8)));
typedef long ntkgram_long4 __attribute__((ext_vector_type(4)));
typedef long ntkgram_long8 __attribute__((ext_vector_type(8)));
typedef float ntkgram_float8 __attribute__((ext_vector_type(8)));
typedef int ntkgram_int8 __attribute__((ext_vector_type(8)));
typedef float ntkgram_float4 __attribute__((ext_vector_type(4)));
typedef int ntkgram_int4 __attribute__((ext_vector_type(4)));

/// Lane-wise correctly rounded square root.
static inline __attribute__((always_inline)) ntkgram_double4 ntkgram_sqrt4(ntkgram_double4 x) {
  return __builtin_elementwise_sqrt(x);
}

/// Lane-wise maximum and minimum of non-NaN lanes, as `x > y ? x : y` (one `vmaxpd`; the
/// builtin's IEEE maxNum semantics cost a compare and a blend more for NaN lanes we never have).
static inline __attribute__((always_inline)) ntkgram_double4 ntkgram_max4(ntkgram_double4 x, ntkgram_double4 y) {
  return x > y ? x : y;
}

static inline __attribute__((always_inline)) ntkgram_double4 ntkgram_min4(ntkgram_double4 x, ntkgram_double4 y) {
  return x < y ? x : y;
}

static inline __attribute__((always_inline)) ntkgram_double8 ntkgram_sqrt8(ntkgram_double8 x) {
  return __builtin_elementwise_sqrt(x);
}

static inline __attribute__((always_inline)) ntkgram_double8 ntkgram_max8(ntkgram_double8 x, ntkgram_double8 y) {
  return __builtin_elementwise_max(x, y);
}

static inline __attribute__((always_inline)) ntkgram_double8 ntkgram_min8(ntkgram_double8 x, ntkgram_double8 y) {
  return __builtin_elementwise_min(x, y);
}

/// `b` in the lanes where `x > y`, else `a` (a compare and a blend: the vector `?:` lowers to
/// `vblendvpd`; generic Swift compares of 8-lane vectors are split into scalar compares).
static inline __attribute__((always_inline)) ntkgram_double4
ntkgram_select_greater4(ntkgram_double4 a, ntkgram_double4 b, ntkgram_double4 x, ntkgram_double4 y) {
  return x > y ? b : a;
}

static inline __attribute__((always_inline)) ntkgram_double8
ntkgram_select_greater8(ntkgram_double8 a, ntkgram_double8 b, ntkgram_double8 x, ntkgram_double8 y) {
  return x > y ? b : a;
}

/// The same four operations on 8 floats (one ymm register): the convolutional slices in float32.
static inline __attribute__((always_inline)) ntkgram_float8 ntkgram_sqrt8f(ntkgram_float8 x) {
  return __builtin_elementwise_sqrt(x);
}

static inline __attribute__((always_inline)) ntkgram_float8 ntkgram_max8f(ntkgram_float8 x, ntkgram_float8 y) {
  return x > y ? x : y;
}

static inline __attribute__((always_inline)) ntkgram_float8 ntkgram_min8f(ntkgram_float8 x, ntkgram_float8 y) {
  return x < y ? x : y;
}

static inline __attribute__((always_inline)) ntkgram_float8
ntkgram_select_greater8f(ntkgram_float8 a, ntkgram_float8 b, ntkgram_float8 x, ntkgram_float8 y) {
  return x > y ? b : a;
}

static inline __attribute__((always_inline)) ntkgram_float4 ntkgram_sqrt4f(ntkgram_float4 x) {
  return __builtin_elementwise_sqrt(x);
}

static inline __attribute__((always_inline)) ntkgram_float4 ntkgram_max4f(ntkgram_float4 x, ntkgram_float4 y) {
  return __builtin_elementwise_max(x, y);
}

static inline __attribute__((always_inline)) ntkgram_float4 ntkgram_min4f(ntkgram_float4 x, ntkgram_float4 y) {
  return __builtin_elementwise_min(x, y);
}

static inline __attribute__((always_inline)) ntkgram_float4
ntkgram_select_greater4f(ntkgram_float4 a, ntkgram_float4 b, ntkgram_float4 x, ntkgram_float4 y) {
  return x > y ? b : a;
}

#endif
