#!/usr/bin/env bash
# Empirical NTK, side by side in one run on this machine (docs/performance.md): ntkgram's whole
# `build --empirical` (process start to fsynced file, float64, one rank × 2 threads) against
# neural-tangents' empirical_ntk_fn (jit, float64, both cores) in each of its implementations,
# for a depth-3 width-2048 ReLU network with one output on Fashion-MNIST images.
#   benchmarks/empirical-side-by-side.sh [N_NT] [N_OURS]
# neural-tangents' implementations cost O(N²·parameters) here (minutes for a few hundred images),
# so they run on N_NT images (default 256) and ours on N_NT and on N_OURS (default 2048);
# entries per second are compared at the same N. neural-tangents 0.6.5's structured
# derivatives need JAX ≤ 0.4.23 (with 0.4.30 it fails on a removed internal), so this uses its own
# venv (.venv-bench-nt) with that JAX.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
n_nt="${1:-256}"; n_ours="${2:-2048}"
bin="${NTKGRAM_BIN:-$here/.build/release/ntkgram}"
venv="$here/.venv-bench-nt"
if [ ! -f "$venv/.ready" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "numpy<2" "scipy<1.13" "jax[cpu]==0.4.23" "jaxlib==0.4.23" "neural-tangents==0.6.5"
  touch "$venv/.ready"
fi
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
images=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ours() {
  local n="$1" t0 t1
  t0=$(date +%s.%N)
  "$bin" build --train "$images" --train-limit "$n" --empirical --seed 0 --depth 3 --width 2048 --readout-width 1 \
    --W-std 1.4142135623730951 --b-std 0.1 --kernels ntk --dtype float64 --tile 512 --threads 2 --out "$work/k$n.h5" --quiet
  t1=$(date +%s.%N)
  python3 -c "import json,sys; n=$n; s=$t1-$t0; print(json.dumps({'tool':'ntkgram','n':n,'seconds':s,'entries_per_s':n*n/s}))"
}
ours "$n_nt"
ours "$n_ours"
for impl in 3 2; do "$venv/bin/python" "$here/benchmarks/empirical_nt.py" "$n_nt" 3 2048 1 "$impl" 2>/dev/null; done
# Jacobian contraction does not fit in memory unbatched (28 GB for 256 images): batches of 32,
# given at most 10 minutes (far more than the others take).
timeout 600 "$venv/bin/python" "$here/benchmarks/empirical_nt.py" "$n_nt" 3 2048 1 1 32 2>/dev/null ||
  echo "{\"n\": $n_nt, \"implementation\": 1, \"batch\": 32, \"ok\": false, \"error\": \"not finished in 600 s\"}"
