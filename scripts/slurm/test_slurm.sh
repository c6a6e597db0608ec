#!/bin/bash
# End-to-end test of the Slurm scripts on this machine: starts a single-node Slurm (munge,
# slurmctld and slurmd on loopback, with a private configuration in a temporary folder),
# submits a sharded batch over a small queries file with submit.sh, waits for the merge, and
# compares the merged run with a one-process `ziprerank batch` over the same file (query ids,
# rankings and scores; timings aside). Needs root and Debian's slurm-wlm and munge (installed
# here when missing and apt can); skips with exit 0 and a message otherwise.
#
#   scripts/slurm/test_slurm.sh [BUILD_DIR]      (default: build)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath "${1:-$repo/build}")
bin="$build/ziprerank"
skip() { echo "test_slurm: SKIPPED: $*"; exit 0; }

[ -x "$bin" ] || { echo "test_slurm: no binary at $bin (build first)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "needs root to start munge and the Slurm daemons"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  if [ "${ZIPRERANK_SLURM_INSTALL:-1}" = 1 ] && command -v apt-get >/dev/null; then
    echo "test_slurm: installing slurm-wlm and munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge \
      >/dev/null 2>&1 || skip "slurm-wlm/munge are not installed and apt-get could not install them"
  else
    skip "slurm-wlm and munge are not installed"
  fi
fi

work=$(mktemp -d /tmp/zr-slurm.XXXXXX)
chmod 755 "$work"  # munged runs as the munge user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$work"
}
trap cleanup EXIT
t0=$(date +%s)

# munge: our own key, socket and daemon (a running system munged is left alone).
mkdir -p "$work/munge"
chown munge:munge "$work/munge" 2>/dev/null || true
chmod 711 "$work/munge"  # the socket must be reachable by every user
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$work/munge/munge.key" 2>/dev/null || true
chmod 400 "$work/munge/munge.key"
socket="$work/munge/munge.socket"
munge_opts=(--key-file="$work/munge/munge.key" --socket="$socket"
  --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log"
  --seed-file="$work/munge/munged.seed")
if id munge >/dev/null 2>&1; then
  runuser -u munge -- munged "${munge_opts[@]}"
else
  munged --force "${munge_opts[@]}"
fi
for _ in $(seq 50); do [ -f "$work/munge/munged.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/munge/munged.pid")")

# Slurm: one node on loopback, on two ports free now (another Slurm may hold the defaults).
read -r ctld_port slurmd_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
cpus=$(nproc)
mkdir -p "$work/state" "$work/spool" "$work/out"
conf="$work/slurm.conf"
cat > "$conf" <<CONF
ClusterName=zrtest
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdTimeout=30
NodeName=zrnode NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=zrtest Nodes=zrnode Default=YES MaxTime=10 State=UP
CONF
export SLURM_CONF="$conf"
slurmctld -c -f "$conf"
slurmd -N zrnode -f "$conf"
for _ in $(seq 100); do
  [ -f "$work/slurmctld.pid" ] && [ -f "$work/slurmd.pid" ] && break
  sleep 0.1
done
pids+=("$(cat "$work/slurmd.pid" 2>/dev/null || true)" "$(cat "$work/slurmctld.pid" 2>/dev/null || true)")
state=""
for _ in $(seq 150); do
  state=$(sinfo -h -N -n zrnode -o %T 2>/dev/null || true)
  case "$state" in idle*) break ;; esac
  sleep 0.2
done
case "$state" in idle*) ;; *)
  tail -5 "$work/slurmctld.log" "$work/slurmd.log" >&2 || true
  echo "test_slurm: the node did not come up (state '$state')" >&2; exit 1 ;;
esac
echo "test_slurm: single-node Slurm up ($(sinfo --version), $cpus CPUs) in $(( $(date +%s) - t0 )) s"

# Inputs: a tiny model and 9 queries over the committed test images.
"$bin" --log-level warn init --seed 5 --out "$work/tiny" >/dev/null
images=$(cd "$repo/tests/fixtures/images" && ls *.png | grep -v -e expected -e resized | head -8)
python3 - "$repo/tests/fixtures/images" "$work/queries.jsonl" $images <<'PY'
import json, sys
folder, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "w") as f:
    for q in range(9):
        cands = [{"id": n, "image": f"{folder}/{n}"} for n in names[: 3 + q % 5]]
        f.write(json.dumps({"query_id": f"q{q}", "query": f"which page shows figure {q}",
                            "candidates": cands}) + "\n")
PY

# The sharded run through Slurm, and the one-process run.
t1=$(date +%s)
ZIPRERANK_BIN="$bin" "$repo/scripts/slurm/submit.sh" -n 3 --wait "$work/queries.jsonl" \
  "$work/out" -- --model "$work/tiny" --log-level warn
echo "test_slurm: array of 3 tasks and the merge done in $(( $(date +%s) - t1 )) s"
sed 's/^/  merge.log: /' "$work/out/merge.log"
"$bin" --log-level warn batch --model "$work/tiny" --threads 1 -i "$work/queries.jsonl" \
  -o "$work/single.jsonl" 2>/dev/null
python3 - "$work/out/run.jsonl" "$work/single.jsonl" <<'PY'
import json, sys
def load(p):
    return [(r["query_id"], [(x["id"], x["score"]) for x in r["ranking"]])
            for r in map(json.loads, open(p))]
merged, single = load(sys.argv[1]), load(sys.argv[2])
assert len(merged) == 9, f"merged run has {len(merged)} queries, expected 9"
assert merged == single, "the merged run differs from the one-process run"
print(f"test_slurm: merged run ({len(merged)} queries from 3 shards) equals the one-process run "
      "(ids, order and scores)")
PY
# The merge refuses a query twice and a missing shard.
merge="$repo/scripts/slurm/merge_shards.py"
mkdir -p "$work/bad"
cp "$work/out"/shard-*.jsonl "$work/bad/"
head -1 "$work/bad/shard-1-of-3.jsonl" >> "$work/bad/shard-3-of-3.jsonl"
if python3 "$merge" "$work/queries.jsonl" "$work/bad" 3 "$work/bad.jsonl" 2>"$work/bad.err"; then
  echo "test_slurm: the merge accepted a query present twice" >&2; exit 1
fi
grep -q "again" "$work/bad.err" || { cat "$work/bad.err" >&2; exit 1; }
rm "$work/bad/shard-2-of-3.jsonl"
if python3 "$merge" "$work/queries.jsonl" "$work/bad" 3 "$work/bad.jsonl" 2>"$work/bad.err"; then
  echo "test_slurm: the merge accepted a missing shard" >&2; exit 1
fi
grep -q "missing" "$work/bad.err" || { cat "$work/bad.err" >&2; exit 1; }
echo "test_slurm: the merge refuses a query present twice and a missing shard"
echo "test_slurm: PASSED in $(( $(date +%s) - t0 )) s"
