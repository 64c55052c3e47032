# Shared by demo.sh and the bench scripts: starts a bootstrap peer and four nodes on
# 127.0.0.1 (node 0 submits and runs no jobs; node 3 lies on purpose unless HONEST_NET=1) and
# stops them on exit. Node 0 is the network's founder: every node lists it with --genesis, so
# its grant is spendable and it can post paid jobs. Expects `say` and `bin` to be set; sets
# `work`, `api` (node 0's API) and `ids`.

work=$(mktemp -d)
targets=""
pids=()
cleaned=false
cleanup() {
  $cleaned && return
  cleaned=true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
  [[ -n $targets ]] && rm -f "$targets"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

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
"$bin/distributeai-bootstrap" --listen /ip4/127.0.0.1/tcp/0 --metrics 127.0.0.1:0 --data-dir "$work/boot" >"$work/boot.out" 2>"$work/boot.log" &
pids+=($!)
boot=$(wait_line "$work/boot.out" "listening on ")
boot_metrics=$(wait_line "$work/boot.out" "metrics: http://")
echo "bootstrap peer: $boot"

declare -a apis ids
# The founder's identity exists before any node starts, so every node can name it.
founder=$("$bin/distributeai" identity --json --data-dir "$work/node0" 2>/dev/null | sed -n 's/.*"peer_id":"\([^"]*\)".*/\1/p')
[[ -n $founder ]] || { echo "cannot create the founder's identity" >&2; exit 1; }
roles=("submitter (runs no jobs; the network's genesis identity)" "honest worker" "honest worker" "LYING worker (--simulate-fault wrong-result)")
[[ ${HONEST_NET:-0} == 1 ]] && roles[3]="honest worker"
for i in 0 1 2 3; do
  args=(node --no-mdns --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 --bootstrap "$boot"
        --data-dir "$work/node$i" --cpus 1 --memory-mb 512 --region "demo-$i" --genesis "$founder")
  [[ $i == 0 ]] && args+=(--no-worker)
  [[ $i == 3 && ${HONEST_NET:-0} != 1 ]] && args+=(--simulate-fault wrong-result)
  "$bin/distributeai" "${args[@]}" >"$work/node$i.out" 2>"$work/node$i.log" &
  pids+=($!)
  ids[i]=$(wait_line "$work/node$i.out" "peer_id: ")
  apis[i]=$(wait_line "$work/node$i.out" "api: http://")
  echo "node $i  ${ids[i]}  ${roles[i]}"
done
api=${apis[0]}

# Prometheus with monitoring/prometheus.yml scrapes whatever is listed here (monitoring/README.md).
targets="$(dirname "${BASH_SOURCE[0]}")/../../monitoring/targets/local-net.yml"
{
  printf -- '- targets: ["%s"]\n  labels: { instance: bootstrap, network: local, node_role: bootstrap }\n' "${boot_metrics%/metrics}"
  for i in 0 1 2 3; do
    printf -- '- targets: ["%s"]\n  labels: { instance: node%s, network: local, node_role: %s }\n' \
      "${apis[i]}" "$i" "$([[ $i == 0 ]] && echo submitter || echo worker)"
  done
} >"$targets"

say "Waiting for the mesh to form"
for _ in $(seq 1 120); do
  workers=$("$bin/distributeai" peers --json --api "$api" | { grep -o '"accepts_jobs":true' || true; } | wc -l)
  [[ $workers -ge 3 ]] && break
  sleep 0.5
done
"$bin/distributeai" peers --api "$api"
sleep 2 # let the workers hear the submitter's announcement too

