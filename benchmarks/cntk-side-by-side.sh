#!/usr/bin/env bash
# Convolutional kernels at the machine's limit (issue #30; benchmarks/cntk_side_by_side.py): this
# release, the release of OLD_COMMIT (default 12766b4, before the slice executor) and
# neural-tangents on the same images, in one run. The old release is built once from a clone of
# this repository into .bench-cache/ (kept out of git) and reused. Unsets
# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for the run only.
#   bash benchmarks/cntk-side-by-side.sh [rows.json]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bash scripts/install-deps.sh
venv="$(bash scripts/python-env.sh)"
bash scripts/build-release.sh

old="${OLD_COMMIT:-12766b4}"
cache="${BENCH_CACHE:-$root/.bench-cache}"
src="$cache/ntkgram-$old"
old_bin="$src/.build/release/ntkgram"
want="$(git rev-parse --verify "$old^{commit}")"
if [ ! -x "$old_bin" ] || [ "$(git -C "$src" rev-parse HEAD 2>/dev/null)" != "$want" ]; then
  echo "building the release of $old in $src" >&2
  mkdir -p "$cache"
  [ -d "$src/.git" ] || git clone -q "$root" "$src"
  git -C "$src" checkout -q --detach "$want"
  (cd "$src" && bash scripts/build-release.sh)
fi

export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}" OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
OLD_NTKGRAM_BIN="$old_bin" OLD_COMMIT="$old" \
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" benchmarks/cntk_side_by_side.py "$@"
