#!/usr/bin/env bash
# build --against against a full build, side by side on the same machine: a full build of N
# training and M test images (Fashion-MNIST, both kernels, 2 ranks) and the build of the same M
# test images against the stored training kernel, alternated over REPEATS rounds. Prints each
# time, the ratio, and the bound the issue sets: 1.3 × M·N / (N²/2 + M·N).
#
#   bash benchmarks/against.sh [N] [M] [REPEATS]     (default 10000 2000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}" m="${2:-2000}" repeats="${3:-3}"
bin="$PWD/.build/release/ntkgram"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fm=/usr/share/datasets/fashion-mnist
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
launch=(mpirun --oversubscribe --bind-to none -np 2 "$bin")
train=(--train "$fm/train-images-idx3-ubyte.gz" --train-labels "$fm/train-labels-idx1-ubyte.gz" --train-limit "$n")
test=(--test "$fm/t10k-images-idx3-ubyte.gz" --test-labels "$fm/t10k-labels-idx1-ubyte.gz" --test-limit "$m")
"${launch[@]}" build "${train[@]}" --out "$work/train.h5" --quiet      # the stored training kernel
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
best_full=1e9 best_against=1e9
for round in $(seq "$repeats"); do
  t0=$(now); "${launch[@]}" build "${train[@]}" "${test[@]}" --out "$work/full.h5" --force --quiet; t1=$(now)
  "${launch[@]}" build --against "$work/train.h5" "${test[@]}" --out "$work/against.h5" --force --quiet; t2=$(now)
  full=$(calc "$t1 - $t0") against=$(calc "$t2 - $t1")
  printf 'round %d: full build %.2f s, --against %.2f s, ratio %.3f\n' "$round" "$full" "$against" "$(calc "$against / $full")"
  best_full=$(calc "($full < $best_full) ? $full : $best_full")
  best_against=$(calc "($against < $best_against) ? $against : $best_against")
done
h5diff "$work/full.h5" "$work/against.h5" /test/ntk /test/ntk && h5diff "$work/full.h5" "$work/against.h5" /test/nngp /test/nngp
bound=$(calc "1.3 * $m * $n / ($n * $n / 2 + $m * $n)")
ratio=$(calc "$best_against / $best_full")
verdict=$(awk -v r="$ratio" -v b="$bound" 'BEGIN { print (r <= b) ? "met" : "missed" }')
printf 'N = %d, M = %d: best full %.2f s, best --against %.2f s; ratio %.3f, bound 1.3·MN/(N²/2+MN) = %.3f: %s; /test/* identical\n' \
  "$n" "$m" "$best_full" "$best_against" "$ratio" "$bound" "$verdict"
