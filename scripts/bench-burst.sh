#!/usr/bin/env bash
# Issue 12's burst figure: JOBS no-op jobs (default 200, `true` in the toolbox image, n=2,
# k=2) submitted at once to a local network of three honest workers with two slots each, far
# more than the free slots. Prints how long the batch took to drain against the floor it is
# compared to (jobs x n x one container's run time / slots), against the same containers run
# straight through Docker as many at a time as there are slots (what this machine's cores
# allow), and how many jobs failed.
# Usage: scripts/bench-burst.sh [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-200}
workers=3
slots_per_worker=2

# shellcheck source=lib/prepare.sh
source scripts/lib/prepare.sh
HONEST_NET=1
# shellcheck source=lib/local-net.sh
source scripts/lib/local-net.sh >&2

now_ms() { date +%s%3N; }

say "One no-op container straight through Docker, 5 times"
for i in 1 2 3 4 5; do
  start=$(now_ms)
  docker run --rm --network none --read-only --memory 64m --cap-drop ALL \
    --security-opt no-new-privileges --user 65534:65534 --log-driver none \
    distributeai/toolbox:local true
  echo $(($(now_ms) - start)) >>"$work/one.ms"
done

say "The same $((jobs * 2)) containers straight through Docker, $((workers * slots_per_worker)) at a time"
start=$(now_ms)
seq 1 $((jobs * 2)) | xargs -P $((workers * slots_per_worker)) -I{} docker run --rm --network none \
  --read-only --memory 64m --cap-drop ALL --security-opt no-new-privileges --user 65534:65534 \
  --log-driver none distributeai/toolbox:local true
echo $(($(now_ms) - start)) >"$work/straight.ms"

say "Submitting $jobs jobs at once"
spec='{"image":"distributeai/toolbox:local","command":["true"],"redundancy":2,"consensus":2,"timeout_s":60,"resources":{"cpus":1,"memory_mb":64}}'
start=$(now_ms)
seq 1 "$jobs" | xargs -P 16 -I{} sh -c \
  "curl -sf -X POST -H 'content-type: application/json' -d '$spec' http://$api/api/v1/jobs >/dev/null"
echo "submitted in $(($(now_ms) - start)) ms" >&2

say "Waiting for the batch to drain"
while :; do
  "$bin/distributeai" list --json --api "$api" >"$work/jobs.json"
  left=$(python3 -c 'import json,sys; print(sum(j["status"] not in ("completed","failed","cancelled") for j in json.load(open(sys.argv[1]))))' "$work/jobs.json")
  [[ $left == 0 ]] && break
  sleep 1
done

python3 - "$work" "$jobs" "$workers" "$slots_per_worker" <<'PY'
import json, statistics, sys
work, jobs, workers, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
views = json.load(open(f"{work}/jobs.json"))
one = statistics.median(int(l) for l in open(f"{work}/one.ms"))
straight = int(open(f"{work}/straight.ms").read()) / 1000
first = min(j["submitted_at"] for j in views)
last = max(j["submitted_at"] + j["timings"]["total_ms"] for j in views)
drain = (last - first) / 1000
slots = workers * per
n = 2
floor = jobs * n * one / 1000 / slots
failed = [j for j in views if j["status"] != "completed"]
print(f"burst: {jobs} no-op jobs (n=2, k=2) on {workers} workers x {per} slots = {slots} slots")
print(f"{'one container straight on Docker':<40}{one:>10.0f} ms")
print(f"{'floor: jobs x n x run time / slots':<40}{floor:>10.1f} s")
print(f"{'same containers straight, slots at a time':<40}{straight:>10.1f} s   (this machine's own floor)")
print(f"{'measured: first submit to last verdict':<40}{drain:>10.1f} s   ({drain / floor:.2f}x the floor, {drain / straight:.2f}x straight)")
print(f"{'jobs completed':<40}{len(views) - len(failed):>10}")
print(f"{'jobs failed':<40}{len(failed):>10}")
for j in failed[:5]:
    print(f"  {j['id'][:12]} {j['status']}: {j.get('failure_reason')}")
PY
