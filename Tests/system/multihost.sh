#!/usr/bin/env bash
# Multi-host test: two test hosts as Linux network namespaces joined by a veth pair, each with
# its own address and host name; Open MPI launches across them through Tests/system/netns-agent.sh
# (its rsh agent) with TCP restricted to that link. The folder is shared, as on a cluster.
#
#   Tests/system/multihost.sh NTKGRAM_BINARY PYTHON
#
# 1. 2 hosts × 1 rank and 2 hosts × 2 ranks: byte-identical to a single-process build; and
#    2 hosts × 2 ranks writing tiled kernels (whole chunks, directly to the disk): the same values.
# 2. Host failure: every process of one host is killed mid-build; the job stops within a
#    timeout with a message naming the lost host; rerun on the remaining host resumes and ends
#    with the same bytes.
# Needs root (namespaces) and iproute2. Cleans up its namespaces and links even on failure.
set -euo pipefail
bin="$(realpath "$1")"; python="$2"
here="$(cd "$(dirname "$0")" && pwd)"
[ "$(id -u)" = 0 ] || { echo "multihost: needs root (network namespaces)" >&2; exit 1; }
tag="ntkg$$"
h1="$tag-h1"; h2="$tag-h2"; a1=10.233.7.1; a2=10.233.7.2
work="$(mktemp -d)"
cleanup() {
  for ns in "$h1" "$h2"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$tag-v1" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$h1"; ip netns add "$h2"
ip link add "$tag-v1" type veth peer name "$tag-v2"
ip link set "$tag-v1" netns "$h1"; ip link set "$tag-v2" netns "$h2"
ip -n "$h1" addr add "$a1/24" dev "$tag-v1"; ip -n "$h2" addr add "$a2/24" dev "$tag-v2"
for ns in "$h1" "$h2"; do ip -n "$ns" link set lo up; done
ip -n "$h1" link set "$tag-v1" up; ip -n "$h2" link set "$tag-v2" up
export NTKGRAM_NETNS_MAP="$a1=$h1 $a2=$h2"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

passed=0; failed=0
check() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "multihost: FAILED: $*" >&2; fi; }

# mpirun on host 1, ranks spread over the hosts of HOSTFILE.
across() {
  local hostfile="$1" np="$2"; shift 2
  ip netns exec "$h1" unshare --uts sh -c 'hostname "$0"; shift; exec "$@"' "$h1" _ \
    mpirun --hostfile "$hostfile" -np "$np" --map-by node --oversubscribe \
      --mca plm_rsh_agent "$here/netns-agent.sh" --mca pml ob1 --mca btl tcp,self \
      --mca btl_tcp_if_include 10.233.7.0/24 --mca oob_tcp_if_include 10.233.7.0/24 \
      "$bin" "$@"
}

same_kernels() {  # same_kernels A.h5 B.h5: the four kernel datasets are byte-identical
  "$python" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"]
sys.exit(0 if all(a[n][...].tobytes() == b[n][...].tobytes() for n in names) else 1)
PY
}

cd "$work"
"$python" -c "
import numpy as np
r = np.random.default_rng(4)
np.save('x.npy', r.standard_normal((700, 40))); np.save('t.npy', r.standard_normal((90, 40)))
np.save('bx.npy', r.standard_normal((6000, 300))); np.save('bt.npy', r.standard_normal((500, 300)))"
"$bin" build --train x.npy --test t.npy --tile 64 --dtype float64 --out ref.h5 --quiet
"$bin" build --train bx.npy --test bt.npy --tile 96 --dtype float32 --out bigref.h5 --quiet
printf "%s slots=1\n%s slots=1\n" "$a1" "$a2" > hosts-1
printf "%s slots=2\n%s slots=2\n" "$a1" "$a2" > hosts-2
printf "%s slots=2\n" "$a1" > hosts-h1

# 1. Across the hosts, 1 and 2 ranks per host.
for per in 1 2; do
  np=$((2 * per))
  if across "hosts-$per" "$np" build --train x.npy --test t.npy --tile 64 --dtype float64 --out "k$per.h5" \
       --log-json "log$per.jsonl" > "run$per.log" 2>&1; then
    check same_kernels ref.h5 "k$per.h5"
    check grep -q "\"hosts\":\[.*$h1.*\]" "log$per.jsonl"
    check grep -q "$h2" "log$per.jsonl"
    check grep -q "$np ranks on 2 host(s)" "run$per.log"
  else
    cat "run$per.log" >&2; failed=$((failed + 1))
  fi
done
if across hosts-2 4 build --train x.npy --test t.npy --tile 64 --dtype float64 --layout tiles --out tiled.h5 > tiled.log 2>&1; then
  check same_kernels ref.h5 tiled.h5
  check "$bin" verify tiled.h5 --quiet
else
  cat tiled.log >&2; failed=$((failed + 1))
fi

# 2. Host failure: kill every process of host 2 once tiles exist.
across hosts-1 2 build --train bx.npy --test bt.npy --tile 96 --dtype float32 --out big.h5 > fail.log 2>&1 &
launcher=$!
for _ in $(seq 1 600); do
  [ "$(ls big.tiles 2>/dev/null | grep -c '^tile-')" -ge 20 ] && break
  sleep 0.05
done
ip netns pids "$h2" | xargs -r kill -9
start=$SECONDS
status=0
for _ in $(seq 1 600); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$launcher" 2>/dev/null; then
  echo "multihost: the job hung after losing a host" >&2; kill -9 "$launcher"; failed=$((failed + 1))
else
  wait "$launcher" || status=$?
  check test "$status" -ne 0
  check test $((SECONDS - start)) -le 60
  # The failure message (not the start-up line listing the hosts) names the lost host.
  grep -v " ranks on " fail.log > fail-messages.log || true
  check grep -q -E "$h2|$a2" fail-messages.log
  grep -m1 -E "$h2|$a2" fail-messages.log | sed 's/^/multihost: failure reported as: /' || true
  [ "${NTKGRAM_SHOW_FAILURE:-0}" = 1 ] && cat fail.log >&2
  check test ! -e big.h5
fi
# Resume on the remaining host.
if across hosts-h1 2 build --train bx.npy --test bt.npy --tile 96 --dtype float32 --out big.h5 > resume.log 2>&1; then
  check grep -q -E "resuming: [1-9][0-9]* of [0-9]+ tiles reused" resume.log
  check same_kernels bigref.h5 big.h5
else
  cat resume.log >&2; failed=$((failed + 1))
fi
echo "multihost: $passed passed, $failed failed"
[ "$failed" = 0 ]
