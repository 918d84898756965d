#!/usr/bin/env bash
# Run a job on this machine with mpirun:  cluster/local.sh JOB [RANKS] [-- extra ntkgram flags]
#
# Builds the release binary for this machine's CPU (scripts/build-release.sh with
# NTKGRAM_TARGET_CPU=native unless set; NTKGRAM_BIN=PATH uses that binary and builds nothing),
# then runs
#   mpirun -np RANKS [--allow-run-as-root] [--oversubscribe] ntkgram build JOB ...
# --allow-run-as-root is added when running as root; --oversubscribe when RANKS exceeds the
# cores (or NTKGRAM_OVERSUBSCRIBE=1). Each rank is single-threaded and mpirun binds one rank to
# one core, which is what we want here.
#
# Ctrl-C (or SIGTERM to this script) stops the build: every finished tile stays checkpointed.
# mpirun drops the ranks' output once interrupted, so rank 0 writes its "how to resume" line
# to a file (NTKGRAM_STOP_NOTE) instead, and this script prints it after mpirun has exited.
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: cluster/local.sh JOB [RANKS] [-- ntkgram build flags]" >&2; exit 64; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
job="$1"; shift
ranks="${1:-$(nproc)}"; [ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
binary="${NTKGRAM_BIN:-}"
if [ -z "$binary" ]; then
  NTKGRAM_TARGET_CPU="${NTKGRAM_TARGET_CPU:-native}" bash "$here/scripts/build-release.sh"
  binary="$here/.build/release/ntkgram"
fi
flags=(-np "$ranks")
[ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
if [ "$ranks" -gt "$(nproc)" ] || [ "${NTKGRAM_OVERSUBSCRIBE:-0}" = 1 ]; then flags+=(--oversubscribe); fi

note="$(mktemp "${TMPDIR:-/tmp}/ntkgram-stop.XXXXXX")"
trap 'rm -f "$note" "$note".tmp-*' EXIT
# mpirun runs as a background job in a process group of its own (set -m), so a terminal's
# Ctrl-C reaches this script only; the script passes the stop on as one SIGTERM, which mpirun
# forwards to every rank. (A second signal to mpirun would make it SIGKILL the ranks at once.)
set -m
NTKGRAM_STOP_NOTE="$note" mpirun "${flags[@]}" -x NTKGRAM_STOP_NOTE "$binary" build "$job" "$@" &
pid=$!
set +m
stopped=0
trap 'stopped=1; kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
while :; do
  wait "$pid" && status=0 || status=$?
  kill -0 "$pid" 2>/dev/null || break
done
if [ -s "$note" ]; then
  cat "$note" >&2
elif [ "$stopped" = 1 ] && [ "$status" != 0 ]; then
  # Rank 0 was killed before it could write (a machine too loaded to run it within mpirun's
  # one-second grace): what is kept is kept all the same.
  echo "ntkgram: error: stopped before rank 0 could count what is kept: every finished tile stays checkpointed; rerun the same command to resume" >&2
fi
exit "$status"
