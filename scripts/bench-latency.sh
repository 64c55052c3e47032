#!/usr/bin/env bash
# Issue 12's latency figure, side by side in one run: the example job (examples/hash-verify)
# at n=3, k=2 through the whole job flow on a local network of three honest workers, against
# the same three containers run straight through Docker at once. Prints the medians of RUNS
# runs each (default 5), their ratio, and the goal (at most 1.2x).
# Usage: scripts/bench-latency.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}

# shellcheck source=lib/prepare.sh
source scripts/lib/prepare.sh
HONEST_NET=1
# shellcheck source=lib/local-net.sh
source scripts/lib/local-net.sh >&2

spec=examples/hash-verify/job.json
script=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["command"][2])' "$spec")

now_ms() { date +%s%3N; }

say "Straight through Docker: three sandboxed containers at once, $runs times"
for i in $(seq 1 "$runs"); do
  running=()
  for w in 1 2 3; do
    mkdir -p "$work/raw$i-$w" && chmod 777 "$work/raw$i-$w"
  done
  start=$(now_ms)
  for w in 1 2 3; do
    docker run --rm --network none --read-only --tmpfs /tmp:size=64m --memory 64m \
      --memory-swap 64m --cpus 1 --pids-limit 256 --cap-drop ALL \
      --security-opt no-new-privileges --user 65534:65534 --log-driver none \
      -v "$work/raw$i-$w:/out" distributeai/toolbox:local sh -c "$script" >/dev/null &
    running+=($!)
  done
  wait "${running[@]}"
  echo $(($(now_ms) - start)) >>"$work/raw.ms"
done

say "Through the job flow (n=3, k=2, three honest workers), $runs times"
for i in $(seq 1 "$runs"); do
  "$bin/distributeai" submit --wait --json --api "$api" --file "$spec" --reward 0 \
    --redundancy 3 --consensus 2 >"$work/flow$i.json"
done

python3 - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
raw = [int(l) for l in open(f"{work}/raw.ms")]
flow, bidding = [], []
for i in range(1, runs + 1):
    job = json.load(open(f"{work}/flow{i}.json"))
    assert job["status"] == "completed", job
    flow.append(job["timings"]["total_ms"])
    bidding.append(job["timings"]["bidding_ms"])
r, f = statistics.median(raw), statistics.median(flow)
print(f"examples/hash-verify, n=3 k=2, 3 honest workers, {runs} runs each, median (ms)")
print(f"{'':<34}{'median':>8}{'min':>8}{'max':>8}")
print(f"{'3 containers straight on Docker':<34}{r:>8.0f}{min(raw):>8}{max(raw):>8}")
print(f"{'job flow, submit to verified':<34}{f:>8.0f}{min(flow):>8}{max(flow):>8}")
print(f"{'  of which bidding':<34}{statistics.median(bidding):>8.0f}{min(bidding):>8}{max(bidding):>8}")
print(f"ratio {f / r:.2f}x   goal: at most 1.20x (issue 12)")
PY
