#!/usr/bin/env bash
# Hole-punching figures (not run in CI): how often DCUtR upgrades the relayed connection
# between two homes behind NAT to a direct one, and how long it takes, under an
# endpoint-independent NAT (eim, where hole punching can work) and a port-randomising one
# (random, where it cannot). For each kind, N times, on a fresh lab (scripts/nat-lab.sh):
#   1. start the bootstrap peer on TAG-boot (203.0.113.2, tcp 4001 and udp 4001 quic-v1), a
#      submitter in home A (a1, --no-worker) and two workers in home B (b1, b2), each with
#      only --bootstrap, --data-dir and --api (b2 also listens on port 4002, see below);
#   2. poll (at most NAT_FIGURES_READY_SECS) until a1 lists both workers with capabilities;
#   3. submit one small 2-of-2 job from a1 (`sh -c 'echo hi'`): the workers' bids and results
#      open relayed connections between the homes, and DCUtR tries to punch a hole;
#   4. poll for at most 45 s after the verdict until DCUtR is done: a1's peer list shows both
#      workers `direct` (then 3 s more without a new hole-punch log line, for the other end's
#      report), or each a1-b pair has had a hole-punch outcome and nothing changed for 10 s;
#   5. collect, then stop the nodes and remove the lab.
# Per run it records: hole-punch successes and failures, summed over the Prometheus counters
# distributeai_nat_traversal_total{event="hole_punch"} of a1, b1 and b2 (the log lines
# "hole punched: ..." / "hole punching failed; ..." are counted too, and any mismatch with
# the counters is printed); whether a1 ended directly connected to b1 and to b2; the
# since_start_ms of the first success line (the earliest by log timestamp over a1, b1 and b2;
# since_start_ms counts from the start of the node that logged it, and the three nodes start
# within about a second of each other), plus the ms from the job's submission to that line;
# and the job's outcome. Then it prints one row per run and a table with one row per kind.
#
# How to read the counts: libp2p's DCUtR reports a success on each end whose own dial made
# the direct connection (one upgrade can count once or twice), and a failure only on the end
# that started the upgrade, after 3 rounds of dials; so "attempts" = successes + failures
# over the three nodes, and the success rate is per reported outcome, not per pair. The
# "a1-b direct pairs" column is the per-pair figure.
#
# Both homes' routers keep a host's source port only while it is free (Linux MASQUERADE), so
# two workers behind one router listening on the same port would get one NAT port towards the
# bootstrap peer and another towards everyone else, which no hole punch can predict. Like
# the NAT lab test, b2 therefore listens on tcp/udp 4002 (b1 on the default 4001), in both
# kinds so the runs are comparable.
#
# Usage (as root): scripts/nat-figures.sh [--runs N] [--bin DIR]
#   --runs N    runs per NAT kind (default 5)
#   --bin DIR   where distributeai and distributeai-bootstrap are (default target/debug);
#               they are copied to a temporary folder first, so a rebuild cannot swap them
# Environment: NAT_FIGURES_READY_SECS (default 180): how long the workers may take to show
# up in a1's peer list.
# Exit status: 0 when every run got as far as a verdict, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=distributeai/toolbox:local
API=127.0.0.1:7070
BOOT_IP=203.0.113.2
KINDS=(eim random)
JOB_CAP=300    # seconds one `submit --wait` may take
PUNCH_SECS=45  # how long to wait for DCUtR after the verdict
READY_SECS=${NAT_FIGURES_READY_SECS:-180}
export NO_COLOR=1 # plain log lines
# The node's default filter, forced: the figures come from info lines.
export DISTRIBUTEAI_LOG="info,libp2p_mdns=warn,libp2p_gossipsub=warn,libp2p_kad=error"
prog=nat-figures
# shellcheck source-path=SCRIPTDIR source=lib/nat-nodes.sh
source scripts/lib/nat-nodes.sh

runs=5
bin=target/debug
parse_options runs bin -- "$@"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs wants a whole number, not '$runs'"
[[ $READY_SECS =~ ^[1-9][0-9]*$ ]] || die "NAT_FIGURES_READY_SECS wants a number of seconds"
check_setup "to read the nodes' JSON and metrics"

tag=$(printf 'nf%04d' $(($$ % 10000)))
work=$(mktemp -d "${TMPDIR:-/tmp}/nat-figures.XXXXXX")
mkdir "$work/bin"
cp "$bin/distributeai" "$bin/distributeai-bootstrap" "$work/bin/"
bin=$work/bin
job_pid=

# Stops the run's nodes and its job (see stop_nodes) and removes its lab.
teardown() {
  stop_nodes ${job_pid:+"$job_pid"}
  job_pid=
}

# shellcheck disable=SC2317 # run by the EXIT trap of stop_on_exit
on_exit() {
  teardown
  rm -rf "${work:?}/bin"
}
stop_on_exit

now_ms() { date +%s%3N; }

# The helpers, kept with the logs: figures.py COMMAND ...
#   probe RUN                    state of DCUtR: "SIGNATURE|DIRECT|SETTLED|description"
#   record RUN KIND I            writes RUN/run.json from the logs, metrics, peers and job
#   report WORK                  the per-run rows and the per-kind table
cat >"$work/figures.py" <<'PY'
import datetime, json, os, re, statistics, sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUCCESS = "hole punched: direct connection to a peer behind NAT"
FAILURE = "hole punching failed; the connection stays relayed"
NODES = ("a1", "b1", "b2")

def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default

def load_json(path):
    try:
        return json.loads(read(path))
    except ValueError:
        return None

def ids(run):
    return {n: read(f"{run}/{n}.id").strip() for n in NODES}

def field(line, name):
    m = re.search(rf"\b{name}=(\S+)", line)
    return m.group(1) if m else None

def epoch_ms(stamp):
    try:
        t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(t.timestamp() * 1000)

def events(run):
    """Hole-punch log lines of a1, b1, b2: (node, ok, epoch ms, peer, since_start_ms, error)."""
    out = []
    for node in NODES:
        for line in read(f"{run}/{node}.log").splitlines():
            line = ANSI.sub("", line)
            ok = SUCCESS in line
            if not ok and FAILURE not in line:
                continue
            since = field(line, "since_start_ms")
            out.append({
                "node": node, "ok": ok, "at_ms": epoch_ms(line.split()[0]) if line.split() else None,
                "peer": field(line, "peer"), "since_start_ms": int(since) if since else None,
                "error": line.split("error=", 1)[1] if "error=" in line else None,
            })
    return out

def routes(run, peers):
    """a1's route to b1 and b2 (direct, relayed, or not connected)."""
    by_id = {p.get("peer_id"): p for p in peers or []}
    known = ids(run)
    return {w: (by_id.get(known[w]) or {}).get("route") or "none" for w in ("b1", "b2")}

def pair_events(run, evs):
    """How many hole-punch outcomes each a1-b pair had (logged on either end)."""
    known = ids(run)
    pairs = {"b1": 0, "b2": 0}
    for e in evs:
        for w in pairs:
            if (e["node"] == "a1" and e["peer"] == known[w]) or (e["node"] == w and e["peer"] == known["a1"]):
                pairs[w] += 1
    return pairs

def metrics(run, node):
    """Counts of distributeai_nat_traversal_total{event="hole_punch"} by result, or None."""
    text = read(f"{run}/{node}.metrics", None)
    if text is None:
        return None
    counts = {"success": 0, "failure": 0}
    for line in text.splitlines():
        if not line.startswith("distributeai_nat_traversal_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("event") == "hole_punch" and labels.get("result") in counts:
            counts[labels["result"]] += int(float(line.rsplit(None, 1)[1]))
    return counts

def probe(run):
    try:
        peers = json.load(sys.stdin)
    except ValueError:
        peers = None
    r = routes(run, peers)
    evs = events(run)
    pairs = pair_events(run, evs)
    ok = sum(e["ok"] for e in evs)
    signature = f"{r['b1']},{r['b2']},{ok},{len(evs) - ok}"
    direct = int(all(v == "direct" for v in r.values()))
    settled = int(all(n > 0 or r[w] == "direct" for w, n in pairs.items()))
    desc = f"a1-b1 {r['b1']}, a1-b2 {r['b2']}; hole-punch log lines: {ok} success(es), {len(evs) - ok} failure(s)"
    print(f"{signature}|{direct}|{settled}|{desc}")
    return 0

def record(run, kind, i):
    evs = events(run)
    peers = load_json(f"{run}/a1.peers.json")
    r = routes(run, peers)
    per_node = {n: metrics(run, n) for n in NODES}
    have_metrics = all(v is not None for v in per_node.values())
    log_counts = {n: {"success": sum(e["ok"] for e in evs if e["node"] == n),
                      "failure": sum(not e["ok"] for e in evs if e["node"] == n)} for n in NODES}
    counts = per_node if have_metrics else log_counts
    successes = sum(c["success"] for c in counts.values())
    failures = sum(c["failure"] for c in counts.values())
    mismatch = [n for n in NODES if have_metrics and per_node[n] != log_counts[n]]
    firsts = sorted((e for e in evs if e["ok"] and e["at_ms"] is not None), key=lambda e: e["at_ms"])
    first = firsts[0] if firsts else None
    times = dict(line.split() for line in read(f"{run}/times").splitlines() if line.strip())
    submit_ms = int(times["submit"]) if "submit" in times else None
    job = load_json(f"{run}/job.json")
    if job is not None and isinstance(job, dict):
        status = job.get("status", "?")
        job_outcome = "completed" if status == "completed" else f"{status}: {job.get('failure_reason') or 'no reason'}"
        job_ms = (job.get("timings") or {}).get("total_ms")
    else:
        rc = times.get("submit_rc", "?")
        err = [l.strip() for l in read(f"{run}/job.err").splitlines() if l.strip()]
        job_outcome = (f"no verdict: submit exited {rc}" + (f" ({err[0].removeprefix('Error: ')})" if err else "")
                       if "submit_rc" in times else "not submitted")
        job_ms = None
    failures_seen = sorted({e["error"] for e in evs if not e["ok"] and e["error"]})
    rec = {
        "kind": kind, "run": int(i), "setup": read(f"{run}/setup").strip() or "ok",
        "successes": successes, "failures": failures,
        "counted_from": "metrics" if have_metrics else "log lines",
        "per_node": counts, "log_mismatch": mismatch, "log_counts": log_counts,
        "direct": r, "pair_events": pair_events(run, evs),
        "first_direct_since_start_ms": first["since_start_ms"] if first else None,
        "first_direct_node": first["node"] if first else None,
        "first_direct_after_submit_ms": (first["at_ms"] - submit_ms) if first and submit_ms else None,
        "job": job_outcome, "job_ms": job_ms,
        "punch_wait": times.get("punch_wait", "-"),
        "failure_errors": failures_seen,
        "lab_stderr": " ".join(read(f"{run}/lab.err").split()),
    }
    with open(f"{run}/run.json", "w") as f:
        json.dump(rec, f, indent=1)
    return 0

def report(work):
    recs = []
    for name in sorted(os.listdir(work)):
        rec = load_json(f"{work}/{name}/run.json") if os.path.isdir(f"{work}/{name}") else None
        if rec:
            recs.append(rec)
    recs.sort(key=lambda r: (r["kind"] != "eim", r["run"]))
    print("Per run (hole punches summed over a1, b1, b2; first direct = since_start_ms of the first")
    print("'hole punched' line, its node, and ms after the job's submission):")
    print(f"{'kind':<6}  {'run':>3}  {'success':>7}  {'failure':>7}  {'per node s/f (a1 b1 b2)':<23}  "
          f"{'a1-b1':<8}  {'a1-b2':<8}  {'first direct ms':<22}  {'wait':<16}  job")
    for r in recs:
        pn = " ".join(f"{c['success']}/{c['failure']}" for c in r["per_node"].values())
        fd = ("-" if r["first_direct_since_start_ms"] is None else
              f"{r['first_direct_since_start_ms']} ({r['first_direct_node']}, +{r['first_direct_after_submit_ms']})")
        job = r["job"] + (f" in {r['job_ms'] / 1000:.1f} s" if r["job_ms"] is not None else "")
        if r["setup"] != "ok":
            job = f"SETUP FAILED: {r['setup']}"
        print(f"{r['kind']:<6}  {r['run']:>3}  {r['successes']:>7}  {r['failures']:>7}  {pn:<23}  "
              f"{r['direct']['b1']:<8}  {r['direct']['b2']:<8}  {fd:<22}  {r['punch_wait']:<16}  {job}")
    for r in recs:
        notes = []
        if r["counted_from"] != "metrics":
            notes.append("counted from log lines (metrics unavailable)")
        if r["log_mismatch"]:
            notes.append(f"metrics differ from log lines on {', '.join(r['log_mismatch'])}: logs {r['log_counts']}")
        if r.get("lab_stderr"):
            notes.append("nat-lab.sh up wrote to stderr (the lab came up): " + r["lab_stderr"])
        if r["failure_errors"]:
            notes.append("failure errors: " + "; ".join(r["failure_errors"]))
        if notes:
            print(f"  {r['kind']} run {r['run']}: " + " | ".join(notes))
    print()
    header = ["kind", "runs", "hole-punch attempts", "successes", "success rate",
              "a1-b direct pairs (of 2 per run)", "median / max ms from start to first direct connection",
              "jobs completed"]
    rows = []
    for kind in ("eim", "random"):
        rs = [r for r in recs if r["kind"] == kind]
        if not rs:
            continue
        s = sum(r["successes"] for r in rs)
        attempts = s + sum(r["failures"] for r in rs)
        direct = sum(v == "direct" for r in rs for v in r["direct"].values())
        firsts = [r["first_direct_since_start_ms"] for r in rs if r["first_direct_since_start_ms"] is not None]
        times = (f"{statistics.median(firsts):.0f} / {max(firsts)} (n={len(firsts)})" if firsts else "- / - (n=0)")
        rows.append([kind, str(len(rs)), str(attempts), str(s),
                     f"{100 * s / attempts:.0f}%" if attempts else "-",
                     f"{direct} of {2 * len(rs)}", times,
                     f"{sum(r['job'] == 'completed' for r in rs)} of {len(rs)}"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in [header] + rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0 if recs and all(r["setup"] == "ok" and r["job"] != "not submitted"
                             and not r["job"].startswith("no verdict") for r in recs) else 1

cmd, args = sys.argv[1], sys.argv[2:]
sys.exit({"probe": probe, "record": record, "report": report}[cmd](*args))
PY

# Fetches a node's /metrics into $run/NAME.metrics (nothing when it does not answer).
fetch_metrics() {
  local host=$1
  ip netns exec "$tag-$host" python3 -c '
import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://'"$API"'/metrics", timeout=5).read().decode())
' >"$run/$host.metrics.part" 2>/dev/null && mv "$run/$host.metrics.part" "$run/$host.metrics"
  rm -f "$run/$host.metrics.part"
}

# One run on a fresh lab. Called in an `||` list, where errexit is off: every step that can
# fail says so itself, and a failure is recorded in $run/setup.
run_one() {
  local kind=$1 i=$2 host args rc json state sig last_sig changed begin deadline direct settled desc
  run=$work/$kind-$i
  mkdir -p "$run"
  say "$kind run $i of $runs: lab $tag, logs in $run"
  lab_up=true
  scripts/nat-lab.sh up "$tag" "$kind" >"$run/lab.out" 2>"$run/lab.err" ||
    { echo "lab up failed: $(tr '\n' ' ' <"$run/lab.err")" >"$run/setup"; return 1; }
  # Seen once: two "Error: Peer netns reference is invalid." lines from a lab that came up
  # and worked; shown with the run's figures.
  [[ ! -s $run/lab.err ]] || echo "nat-lab.sh up wrote to stderr: $(tr '\n' ' ' <"$run/lab.err")" >&2

  start_boot "$run" || { echo "$why" >"$run/setup"; return 1; }
  for host in a1 b1 b2; do
    args=()
    [[ $host == b2 ]] && args=(--listen /ip4/0.0.0.0/tcp/4002 --listen /ip4/0.0.0.0/udp/4002/quic-v1)
    echo "start_$host $(now_ms)" >>"$run/times"
    start_node "$run" "$host" "${args[@]}" || { echo "$why" >"$run/setup"; return 1; }
    echo "$node_id" >"$run/$host.id"
  done

  if ! wait_ready "$READY_SECS" 1 brief "$(<"$run/b1.id")" "$(<"$run/b2.id")"; then
    echo "the workers did not show up in a1's peer list within $READY_SECS s ($ready_status)" >"$run/setup"
    return 1
  fi
  echo "ready after $ready_secs s: $ready_status"

  echo "submit $(now_ms)" >>"$run/times"
  rc=0
  timeout "$JOB_CAP" ip netns exec "$tag-a1" "$bin/distributeai" submit --wait --json --api "$API" \
    --redundancy 2 --consensus 2 --memory-mb 64 --timeout 60 "$IMAGE" -- sh -c 'echo hi' \
    >"$run/job.json" 2>"$run/job.err" </dev/null &
  job_pid=$!
  wait "$job_pid" || rc=$?
  job_pid=
  echo "verdict $(now_ms)" >>"$run/times"
  echo "submit_rc $rc" >>"$run/times"
  echo "job: $(python3 -c 'import json,sys
try: j = json.load(open(sys.argv[1])); print(j.get("status"), j.get("id"))
except Exception: print("no verdict (submit exited", sys.argv[2] + ")")' "$run/job.json" "$rc")"

  # DCUtR: bounded polling, see the header.
  begin=$(date +%s)
  deadline=$((begin + PUNCH_SECS))
  last_sig=
  changed=$begin
  while true; do
    json=$(a1_peers --json 2>/dev/null || true)
    state=$(python3 "$work/figures.py" probe "$run" <<<"$json")
    IFS='|' read -r sig direct settled desc <<<"$state"
    if [[ $sig != "$last_sig" ]]; then
      echo "+$(($(date +%s) - begin)) s: $desc"
      last_sig=$sig
      changed=$(date +%s)
    fi
    if ((direct)) && (($(date +%s) - changed >= 3)); then
      echo "punch_wait both-direct@$(($(date +%s) - begin))s" >>"$run/times"
      break
    fi
    if ((settled)) && (($(date +%s) - changed >= 10)); then
      echo "punch_wait settled@$(($(date +%s) - begin))s" >>"$run/times"
      break
    fi
    if (($(date +%s) >= deadline)); then
      echo "punch_wait cap@${PUNCH_SECS}s" >>"$run/times"
      break
    fi
    pause 1
  done

  a1_peers --json >"$run/a1.peers.json" 2>/dev/null || true
  ip netns exec "$tag-a1" "$bin/distributeai" status --json --api "$API" >"$run/a1.status.json" 2>/dev/null || true
  for host in a1 b1 b2; do fetch_metrics "$host"; done
  return 0
}

say "Hole-punching figures: $runs run(s) per NAT kind (${KINDS[*]}); binaries copied to $bin"
all_ok=true
for kind in "${KINDS[@]}"; do
  for ((i = 1; i <= runs; i++)); do
    run=$work/$kind-$i
    if ! run_one "$kind" "$i"; then
      all_ok=false
      echo "nat-figures: $kind run $i: $(cat "$run/setup" 2>/dev/null || echo "failed")" >&2
      log_tails "$run" >&2
    fi
    teardown
    python3 "$work/figures.py" record "$run" "$kind" "$i" || all_ok=false
  done
done

say "Results"
rc=0
python3 "$work/figures.py" report "$work" || rc=1
$all_ok || rc=1
exit "$rc"
