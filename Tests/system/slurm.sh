#!/usr/bin/env bash
# Slurm test: the batch template cluster/slurm.sbatch through a real one-node Slurm cluster,
# private to this test (its own munged, slurmctld and slurmd, configuration, ports and spool
# in a temporary folder; SLURM_CONF points there).
#
#   Tests/system/slurm.sh NTKGRAM_BINARY PYTHON
#
# A 2-rank job (sbatch --nodes=1 --ntasks=2, the template's 4 × 32 overridden), once with the
# template's default launcher (srun --mpi=pmix) and once with NTKGRAM_LAUNCHER=mpirun:
#   - scancel mid-build: the job output says how many tiles are checkpointed and how to
#     resume; no kernel file yet; the checkpoint folder keeps its records;
#   - resubmitted: the build reuses every record (the template passes --quiet, so the test
#     adds --log-json and reads the resume event), the kernel is byte-identical to an
#     uninterrupted build by the binary alone, and nothing is left over (partial file, lock
#     files, checkpoint folder, stop markers).
# Then a late cancel (≥ 90% of the tiles recorded, srun) and a resubmission: same bytes, no
# leftovers. Every wait has a timeout; on a failure it prints squeue, scontrol show job and the
# daemons' logs. Needs root (slurmd) and the packages of scripts/install-deps.sh (slurm-wlm,
# munge, libpmix-dev). Stops its jobs and daemons on exit, even on failure.
set -euo pipefail
bin="$(realpath "$1")"; python="$2"
here="$(cd "$(dirname "$0")" && pwd)"
template="$(cd "$here/../.." && pwd)/cluster/slurm.sbatch"
[ "$(id -u)" = 0 ] || { echo "slurm: needs root (slurmd)" >&2; exit 1; }
for tool in munged slurmctld slurmd sbatch squeue scontrol scancel sinfo ss; do
  command -v "$tool" >/dev/null || { echo "slurm: $tool missing (bash scripts/install-deps.sh)" >&2; exit 1; }
done
unset NTKGRAM_LAUNCHER NTKGRAM_STOP_NOTE SLURM_JOB_ID SLURM_JOBID
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
started=$SECONDS

work="$(mktemp -d)"
chmod 755 "$work"   # munged wants its socket's folders searchable by everyone
export SLURM_CONF="$work/slurm.conf"
daemons=()          # pids of munged, slurmctld, slurmd
jobs_submitted=()

say() { echo "slurm: $*"; }

dump() {
  {
    echo "---- squeue"; squeue 2>&1 || true
    echo "---- sinfo"; sinfo 2>&1 || true
    for id in "${jobs_submitted[@]}"; do echo "---- scontrol show job $id"; scontrol show job "$id" 2>&1 || true; done
    for f in "$work"/log/*; do echo "---- $f (last 40 lines)"; tail -n 40 "$f" 2>&1 || true; done
    for f in "$work"/*/slurm-*.out; do [ -e "$f" ] && { echo "---- $f"; cat "$f"; }; done
  } >&2
  true
}

die() { echo "slurm: FAILED: $*" >&2; dump; exit 1; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local limit="$1"; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

job_state() { squeue -h -j "$1" -o %T 2>/dev/null || true; }
job_gone() { [ -z "$(job_state "$1")" ]; }
ranks_gone() { ! pgrep -f -- "$1/job.toml" >/dev/null; }   # the job file's path is unique
test_processes_gone() { ! pgrep -f -- "$work/[a-z]+/job\.toml" >/dev/null; }

cleanup() {
  local status=$?
  set +e
  if ((${#daemons[@]})) && ((${#jobs_submitted[@]})); then
    scancel "${jobs_submitted[@]}" 2>/dev/null
    wait_for 60 job_gone_all || echo "slurm: jobs still listed at clean-up" >&2
  fi
  # Any build process of this test still running (its paths are under $work).
  wait_for 10 test_processes_gone || pgrep -f -- "$work/[a-z]+/job\.toml" | xargs -r kill -9
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do kill -TERM "${daemons[$i]}" 2>/dev/null; done
  for pid in "${daemons[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$work"
  exit "$status"
}
job_gone_all() { local id; for id in "${jobs_submitted[@]}"; do job_gone "$id" || return 1; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- The cluster.
free_port() {  # a TCP port nobody listens on, from $1 up
  local p="$1"
  while ss -ltnH "sport = :$p" | grep -q .; do p=$((p + 1)); done
  echo "$p"
}
host="$(hostname -s)"
cpus="$(nproc)"
memory=$(( $(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo) * 9 / 10 ))
ctld_port="$(free_port $((20000 + $$ % 20000)))"
slurmd_port="$(free_port $((ctld_port + 1)))"
mkdir -p "$work/munge" "$work/munge-key" "$work/state" "$work/spool" "$work/log"
chmod 700 "$work/munge-key"
if command -v mungekey >/dev/null; then
  mungekey --create --keyfile="$work/munge-key/munge.key"
else
  dd if=/dev/urandom of="$work/munge-key/munge.key" bs=1024 count=1 status=none
fi
chmod 600 "$work/munge-key/munge.key"
munged --foreground --socket="$work/munge/socket" --key-file="$work/munge-key/munge.key" \
  --pid-file="$work/munge/pid" --seed-file="$work/munge/seed" --log-file="$work/log/munged.log" \
  > "$work/log/munged.out" 2>&1 &
daemons+=($!)
wait_for 15 test -S "$work/munge/socket" || die "munged did not start"

cat > "$SLURM_CONF" <<EOF
ClusterName=ntkgramtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd and no cgroups needed: processes tracked by their parentage, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i > "$work/log/slurmctld.out" 2>&1 &
daemons+=($!)
slurmd -D > "$work/log/slurmd.out" 2>&1 &
daemons+=($!)
node_idle() { sinfo -h -n "$host" -o %T 2>/dev/null | grep -qx idle; }
wait_for 60 node_idle || die "the node did not become idle"
say "cluster up: node $host, $cpus CPUs, ${memory} MiB, ports $ctld_port/$slurmd_port ($((SECONDS - started)) s)"

# ---- The job and its reference.
n=8000; features=200; tile=40
blocks=$(( (n + tile - 1) / tile )); total=$(( blocks * (blocks + 1) / 2 ))
cd "$work"
"$python" -c "
import numpy as np
np.save('x.npy', np.random.default_rng(11).standard_normal(($n, $features)))"
write_job() {  # write_job FOLDER
  mkdir -p "$1"
  cat > "$1/job.toml" <<EOF
[data]
train = "../x.npy"
[kernel]
depth = 3
[build]
tile = $tile
dtype = "float64"
out = "k.h5"
checkpoints = "k.tiles"
EOF
}
write_job ref
t0=$SECONDS
"$bin" build ref/job.toml --out "$work/ref/ref.h5" --checkpoints "$work/ref/ref.tiles" --quiet
say "reference built in $((SECONDS - t0)) s ($total tiles)"

passed=0; failed=0
check() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "slurm: FAILED: $*" >&2; fi; }

records() { ls -f "$1/k.tiles" 2>/dev/null | grep -c '^tile-[0-9]*\.done$' || true; }

submit() {  # submit FOLDER LAUNCHER [extra ntkgram flags]: sets job_id
  local dir="$1" launcher="$2"; shift 2
  local answer
  answer="$(cd "$dir" && NTKGRAM_BIN="$bin" NTKGRAM_LAUNCHER="$launcher" \
    sbatch --parsable --job-name=ntkgram-test --nodes=1 --ntasks=2 --ntasks-per-node=2 \
      --mem-per-cpu=512M --time=5 --output="$dir/slurm-%j.out" "$template" "$dir/job.toml" "$@")" \
    || die "sbatch failed: $answer"
  job_id="${answer%%;*}"
  jobs_submitted+=("$job_id")
}

wait_started() {  # wait_started ID: fails the test if Slurm never runs the job
  local id="$1"
  started_or_ended() { [ "$(job_state "$id")" != PENDING ]; }
  wait_for 30 started_or_ended || die "job $id still pending after 30 s"
}

wait_ended() {  # wait_ended ID SECONDS: the job has left the queue and its ranks are gone
  local id="$1" limit="$2" dir="$3"
  wait_for "$limit" job_gone "$id" || die "job $id still in the queue after $limit s"
  wait_for 30 ranks_gone "$dir" || die "build processes of job $id outlived it: $(pgrep -af -- "$dir/job.toml")"
}

final_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }

# Cancels the job in FOLDER once at least MIN tile records exist. Prints the record count seen.
cancel_at() {  # cancel_at ID FOLDER MIN
  local id="$1" dir="$2" min="$3"
  enough() { [ "$(records "$dir")" -ge "$min" ] || job_gone "$id"; }
  wait_for 120 enough || die "job $id: fewer than $min tile records after 120 s"
  job_gone "$id" && die "job $id ended before it could be cancelled ($(final_state "$id"), $(records "$dir") records)"
  scancel "$id"
}

resume_counts() {  # resume_counts LOG.jsonl: "reused rejected" of the resume event
  "$python" - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "resume":
        print(e["reused"], e["rejected"]); break
else:
    print("none none")
PY
}

no_leftovers() {  # no_leftovers FOLDER: only the job file, the kernel and what the test wrote
  local dir="$1" extra
  extra="$(cd "$dir" && ls -A | grep -v -x -E 'job\.toml|k\.h5|slurm-[0-9]+\.out|resume\.jsonl' || true)"
  [ -z "$extra" ] || { echo "slurm: left over in $dir: $(echo $extra)" >&2; return 1; }
}

same_as_reference() { cmp "$work/ref/ref.h5" "$1/k.h5"; }

stop_line='stopped by the MPI launcher \(SIGTERM: [^)]*\): at least ([0-9]+) of '"$total"' tiles are checkpointed in [^ ]*k\.tiles; rerun the same command, on the hosts you have, to resume'

early_line='stopped by the MPI launcher \(SIGTERM: [^)]*\): the tiles finished so far are checkpointed in [^ ]*k\.tiles; rerun the same command'

resubmit_and_check() {  # resubmit_and_check FOLDER LAUNCHER NAME
  local dir="$1" launcher="$2" name="$3" kept id state reused rejected t
  kept="$(records "$dir")"
  t=$SECONDS
  submit "$dir" "$launcher" --log-json "$dir/resume.jsonl"; id="$job_id"
  wait_started "$id"
  wait_ended "$id" 150 "$dir"
  state="$(final_state "$id")"
  if [ "$state" != COMPLETED ]; then
    check test "$state" = COMPLETED
    echo "slurm: $name: resumed job $id ended $state:" >&2; cat "$dir/slurm-$id.out" >&2
    return
  fi
  read -r reused rejected < <(resume_counts "$dir/resume.jsonl")
  say "$name: resumed in $((SECONDS - t)) s, $reused of $total tiles reused ($kept records were kept, $rejected rejected)"
  check test "$reused" = "$kept"
  check test "$rejected" = 0
  check test ! -e "$dir/k.tiles"
  check same_as_reference "$dir"
  check no_leftovers "$dir"
  rm -f "$dir/k.h5"
}

# ---- Cancel mid-build, resubmit: srun, then mpirun.
for launcher in srun mpirun; do
  dir="$work/$launcher"; write_job "$dir"
  t=$SECONDS
  submit "$dir" "$launcher"; id="$job_id"
  wait_started "$id"
  cancel_at "$id" "$dir" $((total / 10))
  wait_ended "$id" 60 "$dir"
  kept="$(records "$dir")"
  out="$dir/slurm-$id.out"
  say "$launcher: job $id cancelled after $((SECONDS - t)) s ($(final_state "$id")), $kept of $total tiles recorded; its output:"
  sed 's/^/    | /' "$out" || true
  # (a) the output says what is checkpointed and how to resume
  if line="$(grep -o -E "$stop_line" "$out")"; then
    told="$(echo "$line" | sed -E 's/.*\): at least ([0-9]+) of .*/\1/')"
    passed=$((passed + 1))
    check test "$told" -le "$kept"
  elif grep -q -E "$early_line" "$out"; then
    # Rank 0 had time for its early line only (a loaded machine: the launcher SIGKILLs a
    # second after its SIGTERM); it still says where the tiles are and how to resume.
    say "$launcher: NOTE: the early stop line, without a count"
    passed=$((passed + 1))
  else
    check false "$launcher: no stop line in $out"
  fi
  # (b) no kernel yet; the records are kept
  check test ! -e "$dir/k.h5"
  check test "$kept" -ge $((total / 10))
  say "$launcher: after the cancel: $(cd "$dir" && ls -A | tr '\n' ' ')/ k.tiles: $(ls -A "$dir/k.tiles" | grep -v '^tile-[0-9]*\.done$' | tr '\n' ' ')"
  # (c) (d) (e)
  resubmit_and_check "$dir" "$launcher" "$launcher"
done

# ---- Cancel late (≥ 90% recorded), resubmit.
dir="$work/late"; write_job "$dir"
submit "$dir" srun; id="$job_id"
wait_started "$id"
cancel_at "$id" "$dir" $((total * 9 / 10))
wait_ended "$id" 60 "$dir"
say "late: job $id cancelled ($(final_state "$id")) with $(records "$dir") of $total tiles recorded; its output:"
sed 's/^/    | /' "$dir/slurm-$id.out" || true
check test ! -e "$dir/k.h5"
resubmit_and_check "$dir" srun late

say "$passed passed, $failed failed ($((SECONDS - started)) s)"
[ "$failed" = 0 ] || { dump; exit 1; }
