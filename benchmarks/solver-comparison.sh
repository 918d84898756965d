#!/usr/bin/env bash
# Compares the solvers and preconditioners on a kernel file, side by side in one run:
#   benchmarks/solver-comparison.sh [KERNEL.h5] [MEMORY_BUDGET]
# Default: runs/fmnist-10k/kernel.h5 (build it with cluster/local.sh jobs/fashion-mnist-10k.toml 2)
# with a budget of one quarter of its train kernel. Prints one line per combination:
# iterations, passes over K, worst true residual, test accuracy, wall time, peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
kernel="${1:-runs/fmnist-10k/kernel.h5}"
budget="${2:-100MiB}"
bin=.build/release/ntkgram
[ -x "$bin" ] || bash scripts/build-release.sh
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
printf "%-9s %-8s %6s %6s %12s %9s %8s %9s\n" solver precond iters passes true_resid accuracy wall_s peak_MB
for solver in block-cg cg; do
  for pre in rpcholesky nystrom jacobi none; do
    /usr/bin/time -f "%e %M" -o "$out/time" "$bin" solve "$kernel" --solver "$solver" --preconditioner "$pre" \
      --memory-budget "$budget" --max-iter 2000 --out "$out/s.h5" --metrics "$out/m.json" --force --quiet > /dev/null
    read -r wall rss < "$out/time"
    python3 - "$out/m.json" "$solver" "$pre" "$wall" "$rss" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); r = m["results"][0]
print(f"{sys.argv[2]:<9} {sys.argv[3]:<8} {r['iterations']:6d} {m['passes']:6d} {r['worst_true_residual']:12.2e} "
      f"{r.get('accuracy') or float('nan'):9.4f} {float(sys.argv[4]):8.1f} {int(sys.argv[5]) / 1024:9.0f}")
PY
  done
done
