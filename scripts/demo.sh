#!/usr/bin/env bash
# The main job: a whole DistributeAI network on this machine's loopback runs the example job
# and verifies it. It starts a bootstrap peer and four nodes (one submitter, two honest workers
# and one worker that lies on purpose), submits examples/hash-verify with n=3, k=2, prints the
# bids, the votes, the verdict and the verified output, then stops everything it started.
# Needs a Docker engine; no registry access (the job image is built locally).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Preparing: tools, the job image, the binaries"
scripts/setup.sh
scripts/build-images.sh
cargo build --quiet --workspace --bins
bin=target/debug

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for a line starting with $2 in file $1 and prints the rest of it.
wait_line() {
  for _ in $(seq 1 300); do
    if line=$(grep -m1 "^$2" "$1" 2>/dev/null); then
      echo "${line#"$2"}"
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  tail -20 "$1" >&2
  return 1
}

say "Starting a bootstrap peer and four nodes on 127.0.0.1 (mDNS off: nothing leaves this machine)"
"$bin/distributeai-bootstrap" --listen /ip4/127.0.0.1/tcp/0 --data-dir "$work/boot" >"$work/boot.out" 2>"$work/boot.log" &
pids+=($!)
boot=$(wait_line "$work/boot.out" "listening on ")
echo "bootstrap peer: $boot"

declare -a apis ids
roles=("submitter (runs no jobs)" "honest worker" "honest worker" "LYING worker (--simulate-fault wrong-result)")
for i in 0 1 2 3; do
  args=(node --no-mdns --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 --bootstrap "$boot"
        --data-dir "$work/node$i" --cpus 1 --memory-mb 512 --region "demo-$i")
  [[ $i == 0 ]] && args+=(--no-worker)
  [[ $i == 3 ]] && args+=(--simulate-fault wrong-result)
  "$bin/distributeai" "${args[@]}" >"$work/node$i.out" 2>"$work/node$i.log" &
  pids+=($!)
  ids[i]=$(wait_line "$work/node$i.out" "peer_id: ")
  apis[i]=$(wait_line "$work/node$i.out" "api: http://")
  echo "node $i  ${ids[i]}  ${roles[i]}"
done
api=${apis[0]}

say "Waiting for the mesh to form"
for _ in $(seq 1 120); do
  workers=$("$bin/distributeai" peers --json --api "$api" | { grep -o '"accepts_jobs":true' || true; } | wc -l)
  [[ $workers -ge 3 ]] && break
  sleep 0.5
done
"$bin/distributeai" peers --api "$api"
sleep 2 # let the workers hear the submitter's announcement too

say "Submitting examples/hash-verify (n=3 workers, k=2 must agree) and following it"
if ! "$bin/distributeai" submit --wait --api "$api" --file examples/hash-verify/job.json | tee "$work/submit.out"; then
  echo "the job failed; node logs:" >&2
  tail -n 20 "$work"/node*.log >&2
  exit 1
fi
job=$(grep -m1 '^job ' "$work/submit.out" | awk '{print $2}')

say "The verdict, as any node's API shows it (distributeai get $job)"
"$bin/distributeai" get --api "$api" "$job"

say "The lying worker"
echo "node 3 (${ids[3]}) is named as disagreeing; its result was not accepted."
echo
echo "Done. Everything this demo started is stopped now."
