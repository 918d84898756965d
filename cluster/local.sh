#!/usr/bin/env bash
# Run a job on this machine with mpirun:  cluster/local.sh JOB [RANKS] [-- extra ntkgram flags]
#
# Builds the release binary for this machine's CPU (scripts/build-release.sh with
# NTKGRAM_TARGET_CPU=native unless set), then runs
#   mpirun -np RANKS [--allow-run-as-root] [--oversubscribe] ntkgram build JOB ...
# --allow-run-as-root is added when running as root; --oversubscribe when RANKS exceeds the
# cores (or NTKGRAM_OVERSUBSCRIBE=1). Each rank is single-threaded and mpirun binds one rank to
# one core, which is what we want here.
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: cluster/local.sh JOB [RANKS] [-- ntkgram build flags]" >&2; exit 64; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
job="$1"; shift
ranks="${1:-$(nproc)}"; [ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
NTKGRAM_TARGET_CPU="${NTKGRAM_TARGET_CPU:-native}" bash "$here/scripts/build-release.sh"
flags=(-np "$ranks")
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
if [ "$ranks" -gt "$(nproc)" ] || [ "${NTKGRAM_OVERSUBSCRIBE:-0}" = 1 ]; then flags+=(--oversubscribe); fi
exec mpirun "${flags[@]}" "$here/.build/release/ntkgram" build "$job" "$@"
