#!/usr/bin/env bash
# `ntkgram dynamics` against `ntkgram solve` on one kernel file, side by side in one run:
#   benchmarks/dynamics-vs-solve.sh KERNEL.h5 [RANKS] [TIMES] [RIDGE] [TOL]
# Runs solve (its defaults: block CG + Nyström) and dynamics at the same ridge and tolerance
# under mpirun, then prints both wall times, their ratio, and how far dynamics' t = inf test
# predictions are from solve's (relative Frobenius norm). Outputs go next to the kernel file.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kernel="$1"; ranks="${2:-2}"; times="${3:-log:1:1e8:29,inf}"; ridge="${4:-1e-4}"; tol="${5:-1e-6}"
bin="${NTKGRAM_BIN:-$here/.build/release/ntkgram}"
dir="$(dirname "$kernel")"
flags=(-np "$ranks")
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
[ "$ranks" -gt "$(nproc)" ] && flags+=(--oversubscribe)
run() { local t0 t1; t0=$(date +%s.%N); /usr/bin/time -f "%M" -o "$dir/$1.rss" mpirun "${flags[@]}" "$bin" "${@:2}" > "$dir/$1.log" 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
solve_s=$(run solve solve "$kernel" --ridge "$ridge" --tol "$tol" --out "$dir/bench-solution.h5" --metrics "$dir/bench-solve.json" --force --quiet)
dyn_s=$(run dynamics dynamics "$kernel" --times "$times" --ridge "$ridge" --tol "$tol" --out "$dir/bench-dynamics.h5" --metrics "$dir/bench-dynamics.json" --force --quiet)
venv="$(bash "$here/scripts/python-env.sh")"
"$venv/bin/python" - "$dir" "$solve_s" "$dyn_s" <<'PY'
import json, sys, h5py, numpy as np
d, solve_s, dyn_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s, m = json.load(open(f"{d}/bench-solve.json")), json.load(open(f"{d}/bench-dynamics.json"))
a = h5py.File(f"{d}/bench-solution.h5")["/test/predictions"][...]
b = h5py.File(f"{d}/bench-dynamics.h5")["/dynamics/test/predictions"][-1]
print(f"N = {s['train_count']}, M = {s['test_count']}, {s['ranks']} ranks, ridge {s['results'][0]['ridge']}, tol {h5py.File(f'{d}/bench-dynamics.h5').attrs['tolerance']}")
print(f"solve:    {solve_s:7.1f} s wall, {s['results'][0]['iterations']} iterations, {s['passes']} passes, test accuracy {s['results'][0]['accuracy']:.4f}")
print(f"dynamics: {dyn_s:7.1f} s wall, {m['iterations']} block Lanczos steps, {m['passes']} passes, basis {m['basis_bytes'] / 2**20:.0f} MiB per rank, "
      f"{len(m['points'])} times, converged {m['converged']}, t = inf test accuracy {m['points'][-1]['test_accuracy']:.4f}")
print(f"ratio dynamics / solve: {dyn_s / solve_s:.2f}")
print(f"t = inf test predictions vs solve's: relative difference {np.linalg.norm(a - b) / np.linalg.norm(a):.2e}")
best = max((p for p in m['points'] if p['time'] != 'inf'), key=lambda p: p['test_accuracy'])
print(f"best finite time {best['time']:.4g}: test accuracy {best['test_accuracy']:.4f} (t = inf: {m['points'][-1]['test_accuracy']:.4f})")
PY
for f in solve dynamics; do echo "$f peak RSS (one rank, KiB): $(cat "$dir/$f.rss")"; done
