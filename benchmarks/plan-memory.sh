#!/usr/bin/env bash
# `ntkgram plan`'s memory per rank against the peak resident size of real builds of the same
# jobs (GNU time's %M: the largest process, so under mpirun the largest rank).
#
#   bash benchmarks/plan-memory.sh [BINARY]     (default .build/release/ntkgram)
#
# Prints one line per case and fails if an estimate is under the measured peak by more than 5%
# (a job sized by it would be killed) or over it by more than 25%.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-$PWD/.build/release/ntkgram}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
status=0
to_bytes() {  # "119.5 MiB" → bytes
  awk -v v="$1" -v u="$2" 'BEGIN { m = 1; if (u == "KiB") m = 1024; if (u == "MiB") m = 1024^2; if (u == "GiB") m = 1024^3; printf "%.0f", v * m }'
}
run_case() {  # job ranks threads
  local job="$1" ranks="$2" threads="$3"
  local line; line="$("$bin" plan "$job" --ranks "$ranks" --threads "$threads" | grep '^memory per rank:')"
  local est; est="$(to_bytes "$(echo "$line" | awk '{print $4}')" "$(echo "$line" | awk '{print $5}')")"
  local launch=()
  if [ "$ranks" -gt 1 ]; then launch=(mpirun --oversubscribe --bind-to none -np "$ranks"); fi
  local kb; kb="$( { /usr/bin/time -f '%M' "${launch[@]}" "$bin" build "$job" --threads "$threads" --out "$work/k.h5" \
      --checkpoints "$work/k.tiles" --force --restart --quiet >/dev/null; } 2>&1 | tail -1)"
  rm -rf "$work/k.h5" "$work/k.tiles"
  local measured=$((kb * 1024))
  local ratio; ratio="$(awk -v e="$est" -v m="$measured" 'BEGIN { printf "%.3f", e / m }')"
  printf '%-28s ranks %d threads %d: plan %7.1f MiB, peak RSS %7.1f MiB, plan/measured %s\n' \
    "$(basename "$job")" "$ranks" "$threads" "$(awk -v b="$est" 'BEGIN{print b/1048576}')" \
    "$(awk -v b="$measured" 'BEGIN{print b/1048576}')" "$ratio"
  if ! awk -v r="$ratio" 'BEGIN { exit !(r >= 0.95 && r <= 1.25) }'; then status=1; fi
}
run_case jobs/quickstart.toml 1 1
run_case jobs/quickstart.toml 2 1
run_case jobs/quickstart.toml 1 2
run_case jobs/fashion-mnist-10k.toml 1 2
run_case jobs/fashion-mnist-10k.toml 2 1
exit $status
