#!/usr/bin/env bash
# The full Fashion-MNIST figures of docs/results.md "Training dynamics": on a built kernel
# (jobs/fashion-mnist-full.toml), side by side in one run: solve and dynamics at the same ridge
# and tolerance (benchmarks/dynamics-vs-solve.sh), then the top-100 spectrum, then the plots.
#   benchmarks/dynamics-results.sh [KERNEL.h5] [RANKS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kernel="${1:-$here/runs/fmnist-full/kernel.h5}"; ranks="${2:-2}"
bin="${NTKGRAM_BIN:-$here/.build/release/ntkgram}"
dir="$(dirname "$kernel")"
flags=(-np "$ranks")
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
bash "$here/benchmarks/dynamics-vs-solve.sh" "$kernel" "$ranks" "log:1:1e8:29,inf" 1e-4 1e-6
t0=$(date +%s.%N)
mpirun "${flags[@]}" "$bin" spectrum "$kernel" --top 100 --out "$dir/spectrum.h5" --metrics "$dir/spectrum.json" --force --quiet
echo "spectrum wall time: $(echo "$(date +%s.%N) - $t0" | bc) s"
venv="$(bash "$here/scripts/python-env.sh")"
"$venv/bin/python" "$here/scripts/ntkgram-plot.py" --dynamics "$dir/bench-dynamics.h5" --spectrum "$dir/spectrum.h5" --out-dir "$dir/plots"
"$venv/bin/python" - "$dir/spectrum.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
e = s["eigenvalues"]
print(f"spectrum: {s['iterations']} block Lanczos steps, {s['passes']} passes, converged {s['converged']}")
print(f"lambda_1..5 = {', '.join(f'{v:.6g}' for v in e[:5])}; lambda_100 = {e[-1]:.6g}; trace {s['trace']:.6g}")
print(f"smallest Ritz value {s['smallest_ritz_value']:.3g} (residual {s['smallest_ritz_residual']:.2g}); max stable learning rate {s['max_stable_learning_rate']:.6g}")
if s.get("target_energy"):
    t = s["target_energy"]
    print(f"targets' energy: top 1 {t[0]:.4f}, top 10 {sum(t[:10]):.4f}, top 100 {sum(t):.4f}")
PY
