#!/usr/bin/env bash
# Soak test of nodes behind NAT (not run in CI): builds a lab of two homes behind NAT routers
# (scripts/nat-lab.sh), runs the bootstrap peer on its public host, a submitter node in home A
# and two worker nodes in home B (one LAN, so they also meet by mDNS), each started the way a
# home user would, with nothing but --bootstrap, --data-dir and --api. Once every worker shows
# in the submitter's peer list, it submits one small job a minute (n=2, k=2, 1 MiB of output)
# and prints, per job, its start, outcome and seconds to the verdict, then a summary line and
# the submitter's peer table. Everything (nodes, lab) is removed on exit, Ctrl-C or TERM; the
# logs stay in the printed folder.
#
# Usage (as root): scripts/nat-soak.sh [--minutes N] [--kind eim|random] [--bin DIR]
#   --minutes N   submit for N minutes, one job a minute (default 60)
#   --kind K      the routers' NAT: eim (endpoint-independent, hole punching can work) or
#                 random (a new random port per mapping, hole punching fails) (default random)
#   --bin DIR     where distributeai and distributeai-bootstrap are (default target/debug)
# Environment: NAT_SOAK_READY_SECS (default 180): how long the workers may take to show up.
# Exit status: 0 when every job completed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=distributeai/toolbox:local
API=127.0.0.1:7070
BOOT_IP=203.0.113.2
JOB_SCRIPT='head -c 1048576 /dev/zero | tr "\0" a; sleep 1'
JOB_CAP=600 # seconds one `submit --wait` may take before the soak counts the job as failed
READY_SECS=${NAT_SOAK_READY_SECS:-180}
export NO_COLOR=1 # plain log files
prog=nat-soak
# shellcheck source-path=SCRIPTDIR source=lib/nat-nodes.sh
source scripts/lib/nat-nodes.sh

minutes=60
kind=random
bin=target/debug
parse_options minutes kind bin -- "$@"
[[ $minutes =~ ^[1-9][0-9]*$ ]] || die "--minutes wants a whole number of minutes, not '$minutes'"
[[ $kind == eim || $kind == random ]] || die "--kind wants eim or random, not '$kind'"
[[ $READY_SECS =~ ^[1-9][0-9]*$ ]] || die "NAT_SOAK_READY_SECS wants a number of seconds"
# Absolute, for the nodes' data folders and the messages.
[[ ! -d $bin ]] || bin=$(cd "$bin" && pwd)
check_setup "to read the nodes' JSON"

tag=$(printf 'sk%04d' $(($$ % 10000)))
work=$(mktemp -d "${TMPDIR:-/tmp}/nat-soak.XXXXXX")
submit_pids=()

# shellcheck disable=SC2317 # run by the EXIT trap of stop_on_exit
on_exit() { stop_nodes "${submit_pids[@]}"; }
stop_on_exit

# The helper that writes the report, kept with the logs.
# report.py WORK MINUTES KIND one I | all: job I's line, or the table and the summary line.
cat >"$work/report.py" <<'PY'
import json, os, sys, time
work, minutes, kind, mode = sys.argv[1:5]

def job(i):
    with open(f"{work}/job{i}.result") as f:
        start, end, rc = (int(x) for x in f.read().split())
    try:
        with open(f"{work}/job{i}.json") as f:
            view = json.load(f)
    except ValueError:
        view = None
    secs = end - start
    if view is not None:
        total = (view.get("timings") or {}).get("total_ms")
        if total is not None:
            secs = total / 1000
        status = view.get("status", "?")
        outcome = "completed" if status == "completed" else "failed"
        reason = "" if outcome == "completed" else f"{status}: {view.get('failure_reason') or 'no reason given'}"
        job_id = view.get("id", "-")
    else:
        outcome, job_id = "failed", "-"
        if rc == 124:
            reason = f"no verdict within {end - start} s (submit --wait timed out)"
        else:
            with open(f"{work}/job{i}.err") as f:
                lines = [l.strip() for l in f if l.strip()]
            # anyhow prints "Error: <what>", then the causes: keep the first line.
            reason = f"submit exited {rc}: " + (lines[0].removeprefix("Error: ") if lines else "no message")
    started = time.strftime("%H:%M:%S", time.gmtime(start))
    return f"{i:>4}  {started:<9}  {outcome:<9}  {secs:>7.1f}  {job_id[:16]:<16}  {reason}", outcome

if mode == "one":
    print("job " + job(int(sys.argv[5]))[0].lstrip(), flush=True)
    sys.exit(0)
n = ok = 0
print(f"{'JOB':>4}  {'START UTC':<9}  {'OUTCOME':<9}  {'SECONDS':>7}  {'JOB ID':<16}  REASON")
while os.path.exists(f"{work}/job{n + 1}.result"):
    n += 1
    line, outcome = job(n)
    ok += outcome == "completed"
    print(line)
print(f"soak: {n} jobs, {ok} completed, {n - ok} failed over {minutes} minutes (kind {kind})")
sys.exit(0 if n and ok == n else 1)
PY

submit_job() {
  local i=$1 begin end rc=0
  begin=$(date +%s)
  timeout "$JOB_CAP" ip netns exec "$tag-a1" "$bin/distributeai" submit --wait --json --api "$API" \
    --redundancy 2 --consensus 2 --memory-mb 64 --timeout 60 "$IMAGE" -- sh -c "$JOB_SCRIPT" \
    >"$work/job$i.json" 2>"$work/job$i.err" </dev/null || rc=$?
  end=$(date +%s)
  echo "$begin $end $rc" >"$work/job$i.result"
  python3 "$work/report.py" "$work" "$minutes" "$kind" one "$i" || true
}

say "Building NAT lab $tag (kind $kind); logs in $work"
# A lab of this tag that is up already belongs to another soak: leave it alone.
if ip netns list | awk -v t="$tag-" 'index($1, t) == 1 { found = 1 } END { exit !found }'; then
  die "a lab tagged $tag is up already (another soak?)"
fi
lab_up=true
scripts/nat-lab.sh up "$tag" "$kind"

say "Starting the bootstrap peer in $tag-boot ($BOOT_IP)"
start_boot "$work"
echo "bootstrap peer: $boot_addr"

say "Starting a submitter in home A (a1) and two workers in home B (b1, b2)"
declare -A peer_ids
for host in a1 b1 b2; do
  start_node "$work" "$host"
  peer_ids[$host]=$node_id
  echo "$host  ${peer_ids[$host]}"
done

say "Waiting (at most $READY_SECS s) until a1 lists both workers with their capabilities"
if ! wait_ready "$READY_SECS" 2 detail "${peer_ids[b1]}" "${peer_ids[b2]}"; then
  a1_peers || true
  log_tails "$work"
  die "the workers did not show up in a1's peer list within $READY_SECS s"
fi
echo "$ready_status"
a1_peers

say "Submitting one job a minute for $minutes minute(s) from a1"
soak_start=$(date +%s)
for ((i = 1; i <= minutes; i++)); do
  due=$((soak_start + (i - 1) * 60))
  now=$(date +%s)
  ((due <= now)) || pause $((due - now))
  submit_job "$i" &
  submit_pids+=($!)
done
echo "all $minutes job(s) submitted; waiting for the last verdicts"
for pid in "${submit_pids[@]}"; do wait "$pid" || true; done

say "Results"
rc=0
python3 "$work/report.py" "$work" "$minutes" "$kind" all || rc=1
say "a1's peers at the end"
a1_peers || true
exit "$rc"
