# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # variables set by the sourcing script, or for it to read
# Shared by nat-soak.sh and nat-figures.sh: runs nodes in a NAT lab (scripts/nat-lab.sh), the
# bootstrap peer on TAG-boot, a submitter in home A (a1) and workers in home B (b1, b2), waits
# until the submitter lists both workers with their capabilities, and stops the nodes and
# removes the lab again, also on exit, Ctrl-C or TERM. Also the scripts' common helpers: usage,
# die, say, the checks before a lab is built, and pauses that do not hold up INT and TERM.
# Expects `prog` (the name messages start with) before it is sourced; before the functions run,
# `bin`, `IMAGE`, `API`, `BOOT_IP`, `tag` and `work` (logs of the whole script); `on_exit`, a
# function the EXIT trap of `stop_on_exit` runs after the nodes' processes had their TERM.
# Keeps `node_pids` (every process `start` started) and `lab_up` (set it just before
# `nat-lab.sh up`).

node_pids=()
lab_up=false
pause_pid=

# Prints the script's Usage ... Exit status comment and exits with status $1.
usage() {
  sed -n '/^# Usage/,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "$1"
}

# parse_options NAME... -- ARG...: reads the command line: --NAME VALUE sets the variable NAME
# (--bin DIR sets bin), -h or --help prints the usage; anything else is an error.
parse_options() {
  local names=() name found
  while [[ $1 != -- ]]; do
    names+=("$1")
    shift
  done
  shift
  while (($#)); do
    found=
    for name in "${names[@]}"; do
      if [[ $1 == "--$name" ]]; then found=$name; fi
    done
    if [[ $1 == -h || $1 == --help ]]; then
      usage 0
    elif [[ -n $found ]]; then
      printf -v "$found" '%s' "${2:-}"
      shift 2 || usage 2
    else
      echo "$prog: unknown argument '$1'" >&2
      usage 2
    fi
  done
}

die() {
  echo "$prog: $*" >&2
  exit 1
}

say() { printf '\n== %s\n' "$*"; }

# check_setup WHY: what a lab run needs (root, the binaries in $bin, python3, WHY it is needed,
# and the job image, which it builds when it is missing); dies naming what is missing.
check_setup() {
  local b
  [[ $(id -u) -eq 0 ]] || die "needs root (the lab is built from network namespaces)"
  [[ -d $bin ]] || die "no folder $bin (build with: cargo build --bins)"
  for b in distributeai distributeai-bootstrap; do
    [[ -x $bin/$b ]] || die "no $bin/$b (build with: cargo build --bins)"
  done
  command -v python3 >/dev/null || die "needs python3 ($1)"
  docker image inspect "$IMAGE" >/dev/null 2>&1 || scripts/build-images.sh
}

# Pauses in the background so that INT and TERM are handled at once, not after the sleep.
pause() {
  sleep "$1" &
  pause_pid=$!
  wait "$pause_pid" || true
  pause_pid=
}

# stop_nodes [PID...]: stops the processes `start` started and the PIDs given (TERM, up to 10 s
# to stop gracefully) and removes the lab when it is up; `nat-lab.sh down` kills whatever is
# left in its namespaces.
stop_nodes() {
  local pid alive pids=("$@" "${node_pids[@]}")
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=false
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=true; done
    $alive || break
    sleep 0.1
  done
  if $lab_up; then scripts/nat-lab.sh down "$tag"; fi
  lab_up=false
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  node_pids=()
  return 0
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n $pause_pid ]] && kill "$pause_pid" 2>/dev/null
  on_exit
  echo "$prog: logs and data in $work" >&2
  exit "$rc"
}

# From here on, exit, Ctrl-C and TERM end the pause, run `on_exit` and say where the logs are.
stop_on_exit() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# start DIR HOST PROGRAM ARGS...: runs PROGRAM in the lab host, output to DIR/HOST.log.
# A simple command, not a function, so that $! is PROGRAM itself (`ip netns exec` execs it)
# and the TERM of stop_nodes reaches it.
start() {
  local dir=$1 host=$2
  shift 2
  ip netns exec "$tag-$host" "$@" >"$dir/$host.log" 2>&1 </dev/null &
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
      echo "$prog: the process logging to $file exited:" >&2
      tail -20 "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$prog: no line matching '$regex' in $file within 60 s:" >&2
  tail -20 "$file" >&2
  return 1
}

# start_boot DIR: starts the bootstrap peer on TAG-boot ($BOOT_IP, tcp 4001 and udp 4001
# quic-v1), data and log in DIR, and sets `boot_addr` once it listens. On failure it sets `why`.
start_boot() {
  local dir=$1 line
  start "$dir" boot "$bin/distributeai-bootstrap" --listen "/ip4/$BOOT_IP/tcp/4001" \
    --listen "/ip4/$BOOT_IP/udp/4001/quic-v1" --data-dir "$dir/boot"
  line=$(wait_line "$dir/boot.log" "^listening on /ip4/$BOOT_IP/tcp/4001/p2p/" "$last_pid") ||
    { why="the bootstrap peer did not start"; return 1; }
  boot_addr=${line#listening on }
}

# start_node DIR HOST [ARG...]: starts a node on TAG-HOST the way a home user would, with only
# --bootstrap, --data-dir DIR/HOST and --api (a1, the submitter, also --no-worker), then ARGs;
# sets `node_id` once its API is up. On failure it sets `why`.
start_node() {
  local dir=$1 host=$2 line
  shift 2
  local args=(node --bootstrap "$boot_addr" --data-dir "$dir/$host" --api "$API")
  [[ $host == a1 ]] && args+=(--no-worker)
  start "$dir" "$host" "$bin/distributeai" "${args[@]}" "$@"
  line=$(wait_line "$dir/$host.log" '^peer_id: ' "$last_pid") ||
    { why="node $host did not start"; return 1; }
  node_id=${line#peer_id: }
  wait_line "$dir/$host.log" '^api: http://' "$last_pid" >/dev/null ||
    { why="node $host has no API"; return 1; }
}

a1_peers() { ip netns exec "$tag-a1" "$bin/distributeai" peers --api "$API" "$@"; }

# a1_ready brief|detail B1ID B2ID: with a1's peer list (JSON) on stdin, succeeds when it lists
# both workers with a capabilities object, and prints what it sees (with detail: whether each
# is connected and how a1 learnt of it). The script comes in on fd 3: stdin is the peer list.
a1_ready() {
  python3 /dev/fd/3 "$@" 3<<'PY'
import json, sys
detail = sys.argv[1] == "detail"
try:
    peers = {p.get("peer_id"): p for p in json.load(sys.stdin)}
except ValueError:
    peers = {}
ready = True
seen = []
for name, peer_id in zip(("b1", "b2"), sys.argv[2:4]):
    p = peers.get(peer_id)
    caps = p is not None and isinstance(p.get("capabilities"), dict)
    ready = ready and caps
    state = "unknown" if p is None else "capabilities" if caps else "no capabilities yet"
    if detail and p is not None:
        state += (f", {'connected' if p.get('connected') else 'not connected'}, "
                  f"via {p.get('source', '?')}")
    seen.append(f"{name}: {state}")
print(f"a1 knows {len(peers)} peer(s); " + "; ".join(seen))
sys.exit(0 if ready else 1)
PY
}

# wait_ready SECS EVERY brief|detail B1ID B2ID: polls a1's peer list every EVERY s until
# a1_ready succeeds (printing each new state with the time) or SECS have passed. Sets
# `ready_status` (what a1_ready printed last) and `ready_secs` (how long it took); fails on
# the deadline.
wait_ready() {
  local secs=$1 every=$2 begin deadline json last_status=
  shift 2
  begin=$(date +%s)
  deadline=$((begin + secs))
  while true; do
    json=$(a1_peers --json 2>/dev/null || true)
    if ready_status=$(a1_ready "$@" <<<"$json"); then
      ready_secs=$(($(date +%s) - begin))
      return 0
    fi
    if [[ $ready_status != "$last_status" ]]; then
      echo "$(date -u +%H:%M:%S) $ready_status"
      last_status=$ready_status
    fi
    if (($(date +%s) >= deadline)); then return 1; fi
    pause "$every"
  done
}

# Prints the last lines of the nodes' logs in DIR.
log_tails() {
  local host
  for host in a1 b1 b2; do
    if [[ -f $1/$host.log ]]; then
      echo "--- last lines of $1/$host.log"
      tail -5 "$1/$host.log"
    fi
  done
}
