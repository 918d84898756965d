// Thin shim over OpenBLAS (CBLAS) and LAPACKE: headers only, nothing else.
#ifndef NTKGRAM_CLAPACK_SHIM_H
#define NTKGRAM_CLAPACK_SHIM_H
#include <cblas.h>
#include <lapacke.h>
#endif
