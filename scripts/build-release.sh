#!/usr/bin/env bash
# The release build. Package.swift already asks for AVX2 + FMA in the math targets; set
# NTKGRAM_TARGET_CPU (e.g. native, skylake-avx512, znver3) to tune for the nodes that will run
# it — build on (or for) the compute nodes when they differ from the login node.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
if [ -n "${NTKGRAM_TARGET_CPU:-}" ]; then
  extra=(-Xswiftc -target-cpu -Xswiftc "$NTKGRAM_TARGET_CPU" -Xcc "-march=$NTKGRAM_TARGET_CPU")
fi
swift build -c release "${extra[@]}" >&2
