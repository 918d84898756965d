#!/usr/bin/env bash
# Byte-identity against an earlier release: builds the same kernels with two binaries and
# compares every /train/* and /test/* dataset exactly (h5diff, no tolerance).
#
#   bash scripts/compare-release.sh OLD_REF_OR_BINARY [NEW_BINARY]
#
# OLD is a git ref (built in a worktree under .build-ref/) or a path to an ntkgram binary;
# NEW defaults to .build/release/ntkgram. Covered: every job in jobs/ (the full Fashion-MNIST
# job with its limits lowered to 6,000 × 2,000: same network, same code paths), and the
# fully-connected flag combinations the tests use (every activation, both parameterizations,
# bias none, float32 dot products, float64 storage, odd tile sizes).
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: compare-release.sh OLD_REF_OR_BINARY [NEW_BINARY]}"
new="${2:-$PWD/.build/release/ntkgram}"
if [ ! -x "$old" ]; then
  ref="$old"
  tree="$PWD/.build-ref/$ref"
  if [ ! -x "$tree/.build/release/ntkgram" ]; then
    rm -rf "$tree"; mkdir -p "$(dirname "$tree")"
    git worktree add --force --detach "$tree" "$ref" >/dev/null
    (cd "$tree" && swift build -c release >/dev/null)
  fi
  old="$tree/.build/release/ntkgram"
fi
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fm=/usr/share/datasets/fashion-mnist
train="$fm/train-images-idx3-ubyte.gz"; test="$fm/t10k-images-idx3-ubyte.gz"
fails=0; count=0
compare() {  # name, then build arguments
  local name="$1"; shift
  if ! "$old" build "$@" --quiet --out "$work/$name-old.h5" >/dev/null 2>"$work/err"; then
    # A job the earlier release cannot build (a layer list, a preset): nothing to compare.
    echo "skipped: $name (the earlier release refuses it: $(head -c 200 "$work/err"))"
    return
  fi
  "$new" build "$@" --quiet --out "$work/$name-new.h5" >/dev/null
  for d in /train/ntk /train/nngp /test/ntk /test/nngp; do
    if h5ls "$work/$name-old.h5$d" >/dev/null 2>&1; then
      count=$((count + 1))
      if ! h5diff "$work/$name-old.h5" "$work/$name-new.h5" "$d" "$d" >/dev/null; then
        echo "DIFFERS: $name $d"; fails=$((fails + 1))
      fi
    fi
  done
  rm -f "$work/$name-old.h5" "$work/$name-new.h5"
  echo "compared: $name"
}
for job in jobs/*.toml; do
  name="$(basename "$job" .toml)"
  case "$name" in
    *full*) compare "$name" "$job" --train-limit 6000 --test-limit 2000 ;;
    *) compare "$name" "$job" ;;
  esac
done
small=(--train "$train" --train-limit 700 --test "$test" --test-limit 300 --tile 128)
compare erf "${small[@]}" --activation erf --depth 2 --W-std 1.3 --b-std 0.2
compare leaky "${small[@]}" --activation leaky_relu --leaky-slope 0.2 --depth 4
compare abs "${small[@]}" --activation abs --depth 1 --b-std none
compare identity "${small[@]}" --activation identity --depth 2
compare standard "${small[@]}" --parameterization standard --width 64 --depth 3
compare standard-nobias "${small[@]}" --parameterization standard --width 300 --b-std none --activation erf
compare gram32 "${small[@]}" --gram-precision float32 --dtype float64
compare f64-tile7 --train "$train" --train-limit 100 --test "$test" --test-limit 37 --tile 7 --dtype float64
compare standardize "${small[@]}" --preprocess standardize --dtype float64 --activation erf
echo "$count datasets compared, $fails differ"
echo "$((count - fails)) passed, $fails failed"
[ "$fails" = 0 ]
