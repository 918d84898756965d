#ifndef NTKGRAM_CPU_FEATURES_H
#define NTKGRAM_CPU_FEATURES_H

/// 1 when the CPU and the operating system support the AVX-512 F/VL/DQ instructions (the
/// compiler's cpuid + xgetbv check), else 0.
int ntkgram_cpu_has_avx512(void);

/// 1 when the CPU and the operating system support AVX2 and FMA, else 0.
int ntkgram_cpu_has_avx2_fma(void);

#endif
