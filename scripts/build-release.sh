#!/usr/bin/env bash
# The release build. The default is portable: Package.swift asks for AVX2 + FMA in the math
# targets, and the AVX-512 loops (their own target) are chosen at run time by a CPU check, so
# one binary runs at full speed on AVX2 and AVX-512 nodes alike. NTKGRAM_TARGET_CPU (native,
# or an LLVM CPU name such as skylake-avx512, icelake-server, znver4) additionally tunes the
# rest of the code for one CPU; `cluster/local.sh` builds with `native`. A binary built with
# a CPU name runs only on that CPU or newer: build on (or for) the compute nodes when they
# differ from the login node.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
if [ -n "${NTKGRAM_TARGET_CPU:-}" ]; then
  extra=(-Xswiftc -target-cpu -Xswiftc "$NTKGRAM_TARGET_CPU" -Xcc "-march=$NTKGRAM_TARGET_CPU")
fi
swift build -c release "${extra[@]}" >&2
