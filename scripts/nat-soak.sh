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

usage() {
  sed -n '/^# Usage/,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "$1"
}

die() {
  echo "nat-soak: $*" >&2
  exit 1
}

say() { printf '\n== %s\n' "$*"; }

minutes=60
kind=random
bin=target/debug
while (($#)); do
  case $1 in
    --minutes) minutes=${2:-}; shift 2 || usage 2 ;;
    --kind) kind=${2:-}; shift 2 || usage 2 ;;
    --bin) bin=${2:-}; shift 2 || usage 2 ;;
    -h | --help) usage 0 ;;
    *) echo "nat-soak: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
[[ $minutes =~ ^[1-9][0-9]*$ ]] || die "--minutes wants a whole number of minutes, not '$minutes'"
[[ $kind == eim || $kind == random ]] || die "--kind wants eim or random, not '$kind'"
[[ $READY_SECS =~ ^[1-9][0-9]*$ ]] || die "NAT_SOAK_READY_SECS wants a number of seconds"
[[ $(id -u) -eq 0 ]] || die "needs root (the lab is built from network namespaces)"
[[ -d $bin ]] || die "no folder $bin (build with: cargo build --bins)"
bin=$(cd "$bin" && pwd)
for b in distributeai distributeai-bootstrap; do
  [[ -x $bin/$b ]] || die "no $bin/$b (build with: cargo build --bins)"
done
command -v python3 >/dev/null || die "needs python3 (to read the nodes' JSON)"
docker image inspect "$IMAGE" >/dev/null 2>&1 || scripts/build-images.sh

tag=$(printf 'sk%04d' $(($$ % 10000)))
work=$(mktemp -d "${TMPDIR:-/tmp}/nat-soak.XXXXXX")
node_pids=()
submit_pids=()
lab_up=false

# Pauses in the background so that INT and TERM are handled at once, not after the sleep.
pause_pid=
pause() {
  sleep "$1" &
  pause_pid=$!
  wait "$pause_pid" || true
  pause_pid=
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$? pid alive
  trap - EXIT INT TERM
  set +e
  [[ -n $pause_pid ]] && kill "$pause_pid" 2>/dev/null
  for pid in "${submit_pids[@]}" "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  # Nodes stop gracefully within seconds; whatever is left, `nat-lab.sh down` kills.
  for _ in $(seq 1 100); do
    alive=false
    for pid in "${node_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=true; done
    $alive || break
    sleep 0.1
  done
  if $lab_up; then scripts/nat-lab.sh down "$tag"; fi
  echo "nat-soak: logs and data in $work" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_ns() {
  local host=$1
  shift
  ip netns exec "$tag-$host" "$@"
}

# start NAME HOST PROGRAM ARGS...: runs PROGRAM in the lab host, output to $work/NAME.log.
# A simple command, not a function, so that $! is PROGRAM itself (`ip netns exec` execs it)
# and the TERM of the cleanup reaches it.
start() {
  local name=$1 host=$2
  shift 2
  ip netns exec "$tag-$host" "$@" >"$work/$name.log" 2>&1 </dev/null &
  last_pid=$!
  node_pids+=("$last_pid")
}

# Prints the first line of FILE matching the regex, waiting up to 60 s while PID lives.
wait_line() {
  local file=$1 regex=$2 pid=$3 line
  for _ in $(seq 1 600); do
    if line=$(grep -m1 -E -- "$regex" "$file" 2>/dev/null); then
      echo "$line"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "nat-soak: the process logging to $file exited:" >&2
      tail -20 "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "nat-soak: no line matching '$regex' in $file within 60 s:" >&2
  tail -20 "$file" >&2
  return 1
}

a1_peers() { in_ns a1 "$bin/distributeai" peers --api "$API" "$@"; }

# Python helpers, kept with the logs. peers.py NAME PEERID ...: succeeds when a1's peer list
# (JSON on stdin) has every PeerId with a capabilities object, and prints what it sees.
cat >"$work/peers.py" <<'PY'
import json, sys
try:
    peers = {p.get("peer_id"): p for p in json.load(sys.stdin)}
except ValueError:
    peers = {}
ready = True
seen = []
for name, peer_id in zip(sys.argv[1::2], sys.argv[2::2]):
    p = peers.get(peer_id)
    if p is None:
        ready = False
        seen.append(f"{name}: unknown")
        continue
    caps = isinstance(p.get("capabilities"), dict)
    ready = ready and caps
    seen.append(f"{name}: {'capabilities' if caps else 'no capabilities yet'}, "
                f"{'connected' if p.get('connected') else 'not connected'}, via {p.get('source', '?')}")
print(f"a1 knows {len(peers)} peer(s); " + "; ".join(seen))
sys.exit(0 if ready else 1)
PY
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
start boot boot "$bin/distributeai-bootstrap" --listen "/ip4/$BOOT_IP/tcp/4001" \
  --listen "/ip4/$BOOT_IP/udp/4001/quic-v1" --data-dir "$work/boot"
line=$(wait_line "$work/boot.log" "^listening on /ip4/$BOOT_IP/tcp/4001/p2p/" "$last_pid")
boot_addr=${line#listening on }
echo "bootstrap peer: $boot_addr"

say "Starting a submitter in home A (a1) and two workers in home B (b1, b2)"
declare -A peer_ids
for host in a1 b1 b2; do
  args=(node --bootstrap "$boot_addr" --data-dir "$work/$host" --api "$API")
  [[ $host == a1 ]] && args+=(--no-worker)
  start "$host" "$host" "$bin/distributeai" "${args[@]}"
  line=$(wait_line "$work/$host.log" '^peer_id: ' "$last_pid")
  peer_ids[$host]=${line#peer_id: }
  wait_line "$work/$host.log" '^api: http://' "$last_pid" >/dev/null
  echo "$host  ${peer_ids[$host]}"
done

say "Waiting (at most $READY_SECS s) until a1 lists both workers with their capabilities"
deadline=$(($(date +%s) + READY_SECS))
last_status=
while true; do
  json=$(a1_peers --json 2>/dev/null || true)
  if status=$(python3 "$work/peers.py" b1 "${peer_ids[b1]}" b2 "${peer_ids[b2]}" <<<"$json"); then
    echo "$status"
    break
  fi
  if [[ $status != "$last_status" ]]; then
    echo "$(date -u +%H:%M:%S) $status"
    last_status=$status
  fi
  if (($(date +%s) >= deadline)); then
    a1_peers || true
    for host in a1 b1 b2; do
      echo "--- last lines of $work/$host.log"
      tail -5 "$work/$host.log"
    done
    die "the workers did not show up in a1's peer list within $READY_SECS s"
  fi
  pause 2
done
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
