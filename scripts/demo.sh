#!/usr/bin/env bash
# The main job: a whole DistributeAI network on this machine's loopback runs the example job
# and verifies it. It starts a bootstrap peer and four nodes (one submitter, two honest workers
# and one worker that lies on purpose), submits examples/hash-verify with n=3, k=2 and a reward
# of 2 credits (node 0 is the network's genesis identity, so it can pay), prints the
# bids, the votes, the verdict and the verified output, then stops everything it started.
# Needs a Docker engine; no registry access (the job image is built locally).
#
# scripts/demo.sh --keep   leaves the network running afterwards (until Ctrl-C), to explore it
#                          with `distributeai tui`, the web dashboard or the CLI.
set -euo pipefail
keep=false
[[ ${1:-} == --keep ]] && keep=true
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Preparing: tools, the job image, the binaries"
scripts/setup.sh
scripts/build-images.sh
cargo build --quiet --workspace --bins
bin=target/debug

# shellcheck source=lib/local-net.sh
source scripts/lib/local-net.sh

say "Submitting examples/hash-verify (n=3 workers, k=2 must agree, 2 credits to each agreeing worker) and following it"
if ! "$bin/distributeai" submit --wait --api "$api" --file examples/hash-verify/job.json --reward 2 | tee "$work/submit.out"; then
  echo "the job failed; node logs:" >&2
  tail -n 20 "$work"/node*.log >&2
  exit 1
fi
job=$(grep -m1 '^job ' "$work/submit.out" | awk '{print $2}')

say "The verdict, as the submitter's API shows it (distributeai get $job)"
"$bin/distributeai" get --api "$api" "$job"

say "The lying worker"
echo "node 3 (${ids[3]}) is named as disagreeing; its result was not accepted."

say "The verdict proves itself: another node re-checks it from the workers' own signatures"
# Node 2 heard the verdict by gossip; each line says what the worker signed that proves it.
for _ in $(seq 1 50); do
  "$bin/distributeai" verdict check --api "${apis[2]}" "$job" >"$work/check.out" 2>&1 && break
  sleep 0.2
done
cat "$work/check.out"

say "The ledger the verdict fed (every node computes the same; distributeai ledger)"
echo "The founder (node 0, marked *) paid 2 credits to each agreeing worker; the liar got nothing."
"$bin/distributeai" ledger --api "${apis[1]}"
if $keep; then
  say "The network keeps running. In another terminal:"
  echo "  $bin/distributeai tui --api $api        # the terminal UI (submit through its form, watch votes)"
  echo "  $bin/distributeai peers --api $api"
  echo "  http://$api/        # the web dashboard, in a browser on this machine"
  echo "  $work/*.log   # the nodes' logs (grep a job id to follow it across nodes; removed on stop)"
  echo "  prometheus --config.file=monitoring/prometheus.yml --storage.tsdb.path=/tmp/prom   # scrapes this network (monitoring/README.md)"
  echo "Press Ctrl-C here to stop everything."
  # `wait` returns on a signal, so the trap runs at once even when the signal comes from `kill`.
  while true; do
    sleep 3600 &
    pids+=($!)
    wait $!
  done
fi
echo
echo "Done. Everything this demo started is stopped now."
