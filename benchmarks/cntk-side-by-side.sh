#!/usr/bin/env bash
# neural-tangents vs ntkgram on convolutional kernels, same images, same machine, one run (see
# benchmarks/cntk_side_by_side.py). Unsets OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for the run only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
venv="$(bash scripts/python-env.sh)"
bash scripts/build-release.sh
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" benchmarks/cntk_side_by_side.py "$@"
