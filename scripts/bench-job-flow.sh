#!/usr/bin/env bash
# Measures the job flow on the demo's local network: submits examples/hash-verify (n=3, k=2,
# one lying worker) RUNS times, one after another, and prints how long each phase took, from
# the submitter's own timestamps. Usage: scripts/bench-job-flow.sh [RUNS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}

# shellcheck source=lib/prepare.sh
source scripts/lib/prepare.sh
# shellcheck source=lib/local-net.sh
source scripts/lib/local-net.sh >&2

say "Submitting $runs jobs"
for i in $(seq 1 "$runs"); do
  # reward 0: the submitter earns no credits in this network, and the grant covers only a few paid jobs
  "$bin/distributeai" submit --wait --json --api "$api" --file examples/hash-verify/job.json --reward 0 >"$work/job$i.json"
done

python3 - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
phases = ["bidding_ms", "execution_ms", "verification_ms", "fetch_ms", "total_ms"]
rows = {p: [] for p in phases}
for i in range(1, runs + 1):
    job = json.load(open(f"{work}/job{i}.json"))
    assert job["status"] == "completed", job
    for p in phases:
        rows[p].append(job["timings"][p])
print(f"job flow, examples/hash-verify, n=3 k=2, 1 lying worker, {runs} runs (ms)")
print(f"{'phase':<14}{'median':>8}{'mean':>8}{'min':>8}{'max':>8}")
for p in phases:
    v = rows[p]
    print(f"{p[:-3]:<14}{statistics.median(v):>8.0f}{statistics.mean(v):>8.0f}{min(v):>8}{max(v):>8}")
PY
