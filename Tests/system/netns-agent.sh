#!/usr/bin/env bash
# Open MPI's remote-launch agent for the multi-host test: instead of ssh, runs the command in
# the network namespace (and UTS namespace, with its own host name) of the named test host.
#   netns-agent.sh [ssh-style options] HOST COMMAND...
# HOST is an address from the hostfile; NTKGRAM_NETNS_MAP maps addresses to namespaces
# ("10.233.0.1=ntkg-h1 10.233.0.2=ntkg-h2").
set -euo pipefail
while [[ "${1:-}" == -* ]]; do
  case "$1" in -x|-a|-T|-q) shift ;; -o|-p|-l) shift 2 ;; *) shift ;; esac
done
host="$1"; shift
ns=""
for pair in ${NTKGRAM_NETNS_MAP:?}; do
  [ "${pair%%=*}" = "$host" ] && ns="${pair#*=}"
done
[ -n "$ns" ] || { echo "netns-agent: unknown host $host" >&2; exit 255; }
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0"; exec sh -c "$1"' "$ns" "$*"
