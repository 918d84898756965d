// Thin shim over zlib (gzip reading for IDX datasets and checksums).
#ifndef NTKGRAM_CZLIB_SHIM_H
#define NTKGRAM_CZLIB_SHIM_H
#include <zlib.h>
#endif
