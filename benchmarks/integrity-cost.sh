#!/usr/bin/env bash
# The cost of checking what the analysis commands read (every tile against /tiles/checksums at
# its first read, the labels against their recorded checksum, a solution's α in predict): the
# same commands timed with a binary that checks (NEW) and one that does not (OLD, a git ref or
# a binary: the release before the checks), alternated over REPEATS rounds, best of each, on one
# N-sample Fashion-MNIST kernel with M test images (float32, both kernels). Prints each
# command's best times and their ratio, and checks that both binaries give the same α and
# predictions, bit for bit.
#
#   bash benchmarks/integrity-cost.sh OLD_REF_OR_BINARY [N] [M] [REPEATS] [LAYOUT]
#                                     (default N 10000, M 2000, REPEATS 3, LAYOUT auto)
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: integrity-cost.sh OLD_REF_OR_BINARY [N] [M] [REPEATS] [LAYOUT]}"
n="${2:-10000}" m="${3:-2000}" repeats="${4:-3}" layout="${5:-auto}"
new="$PWD/.build/release/ntkgram"
if [ ! -x "$old" ]; then
  tree="$PWD/.build-ref/$old"
  if [ ! -x "$tree/.build/release/ntkgram" ]; then
    rm -rf "$tree"; mkdir -p "$(dirname "$tree")"
    git worktree add --force --detach "$tree" "$old" >/dev/null
    (cd "$tree" && swift build -c release >/dev/null)
  fi
  old="$tree/.build/release/ntkgram"
fi
fm=/usr/share/datasets/fashion-mnist
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$new" build --train "$fm/train-images-idx3-ubyte.gz" --train-labels "$fm/train-labels-idx1-ubyte.gz" --train-limit "$n" \
  --test "$fm/t10k-images-idx3-ubyte.gz" --test-labels "$fm/t10k-labels-idx1-ubyte.gz" --test-limit "$m" \
  --layout "$layout" --out "$work/k.h5" --quiet
"$new" solve "$work/k.h5" --ridge 1e-3 --out "$work/base.h5" --quiet   # the solution predict reads
k="$work/k.h5"
# name | arguments (OUT is replaced by each binary's output file)
commands=(
  "solve (tiles mapped)|solve $k --ridge 1e-3 --quiet --out OUT"
  "solve (tiles streamed)|solve $k --ridge 1e-3 --memory-budget 64MiB --preconditioner jacobi --quiet --out OUT"
  "spectrum --top 10|spectrum $k --top 10 --quiet --out OUT"
  "dynamics, 3 times|dynamics $k --times 1,100,10000 --quiet --out OUT"
  "predict|predict $work/base.h5 $k --out OUT"
)
now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }
printf '%-24s %10s %10s %7s\n' "command (N = $n, M = $m)" "unchecked" "checked" "ratio"
for entry in "${commands[@]}"; do
  name="${entry%%|*}" args="${entry#*|}"
  best_old=1e9 best_new=1e9
  for round in $(seq "$repeats"); do
    for which in old new; do
      bin="$old"; [ "$which" = new ] && bin="$new"
      # shellcheck disable=SC2086
      t0=$(now); "$bin" ${args//OUT/$work/$which.h5} --force >/dev/null; t1=$(now)
      t=$(calc "$t1 - $t0")
      if [ "$which" = old ]; then best_old=$(calc "($t < $best_old) ? $t : $best_old"); else best_new=$(calc "($t < $best_new) ? $t : $best_new"); fi
    done
  done
  for d in /alpha /predictions /test/predictions; do
    if h5ls "$work/old.h5$d" >/dev/null 2>&1; then h5diff "$work/old.h5" "$work/new.h5" "$d" "$d" || { echo "$name: $d differs"; exit 1; }; fi
  done
  printf '%-24s %9.2fs %9.2fs %7.3f\n' "$name" "$best_old" "$best_new" "$(calc "$best_new / $best_old")"
done
echo "α and predictions identical between the two binaries"
