#!/usr/bin/env bash
# A lab of two home networks behind NAT routers, built from network namespaces, for testing
# how nodes find and reach each other across NAT (used by the NAT lab test and
# scripts/nat-soak.sh). It is the classic hole-punching lab of rust-libp2p's tests:
#
#   "internet" (namespace TAG-wan: one bridge, 203.0.113.0/24, a documentation range)
#     ├─ TAG-boot  203.0.113.2   public host (the bootstrap peer runs here)
#     ├─ TAG-pub   203.0.113.3   public host (a public node may run here)
#     ├─ TAG-ra    203.0.113.10  home A's router ── LAN 192.168.1.0/24 ── TAG-a1 192.168.1.2
#     └─ TAG-rb    203.0.113.20  home B's router ── LAN 192.168.1.0/24 ─┬ TAG-b1 192.168.1.2
#                                                                      └ TAG-b2 192.168.1.3
#
# Both homes use the same private subnet, as real homes do. The routers masquerade the LAN
# behind their WAN address and drop unsolicited inbound traffic, like a home router:
#   KIND=eim     plain MASQUERADE: Linux keeps the source port when it is free, so a mapping
#                is endpoint-independent and hole punching can work;
#   KIND=random  MASQUERADE --random-fully: every new mapping gets a random port, so hole
#                punching fails (a "symmetric" NAT).
# Public hosts have no route to 192.168.0.0/16: they reach a home only through connections
# the home opened. Nothing has a default route out of the lab, IPv6 is off in every namespace
# (the lab is IPv4 only), and every interface is created inside the lab's namespaces (veth
# pairs are made directly between two namespaces), so the lab never touches the root
# namespace's interfaces, routes or firewall, and labs with different TAGs coexist.
#
# Usage (as root; needs iproute2 and iptables, see scripts/setup.sh):
#   scripts/nat-lab.sh up TAG KIND   build lab TAG (<= 6 letters/digits), KIND eim or random
#   scripts/nat-lab.sh down TAG      delete lab TAG: ends the processes still running in its
#                                    namespaces, then deletes them (never fails; idempotent)
#   scripts/nat-lab.sh hosts TAG     print "NAME NAMESPACE IP" per host (routers: WAN address)
# Run a program in a host with: ip netns exec TAG-a1 PROGRAM ...
set -euo pipefail

# name, address ("-" for none), role; the order is the order of `hosts`.
HOSTS=(
  "boot 203.0.113.2 public"
  "pub 203.0.113.3 public"
  "ra 203.0.113.10 router"
  "rb 203.0.113.20 router"
  "a1 192.168.1.2 home:ra"
  "b1 192.168.1.2 home:rb"
  "b2 192.168.1.3 home:rb"
)
# Every namespace of a lab, the "internet" last so that `down` removes the edges first.
NAMES=(boot pub ra rb a1 b1 b2 wan)
LAN_GATEWAY=192.168.1.1

usage() {
  sed -n '/^# Usage/,/^# Run a program/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "nat-lab: $*" >&2
  exit 1
}

check_tag() {
  [[ $1 =~ ^[A-Za-z0-9]{1,6}$ ]] || die "TAG must be 1 to 6 letters or digits, not '$1'"
}

# Runs a command inside namespace $1.
in_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

ns_exists() {
  ip netns list | awk -v ns="$1" '$1 == ns { found = 1 } END { exit !found }'
}

# Creates namespace $1: IPv6 off, no forwarding (a new namespace inherits the machine's
# net.ipv4.ip_forward; routers turn it on), loopback up, and bridged frames kept out of
# iptables (with br_netfilter loaded on the machine, bridged LAN traffic would otherwise cross
# the routers' FORWARD chain and its DROP policy). These settings are per namespace.
add_ns() {
  local ns=$1
  ip netns add "$ns"
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.ip_forward=0
  if in_ns "$ns" test -e /proc/sys/net/bridge/bridge-nf-call-iptables; then
    in_ns "$ns" sysctl -qw net.bridge.bridge-nf-call-iptables=0
  fi
  ip -n "$ns" link set lo up
}

# veth pair: interface $2 in namespace $1, its peer $4 in namespace $3; both up.
add_veth() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

add_bridge() {
  ip -n "$1" link add "$2" type bridge
  ip -n "$1" link set "$2" up
}

# Router namespace $1, WAN interface wan0: NAT and a home router's firewall.
router_firewall() {
  local ns=$1 kind=$2
  local masq=(-j MASQUERADE)
  [[ $kind == random ]] && masq+=(--random-fully)
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
  in_ns "$ns" iptables -t nat -A POSTROUTING -o wan0 "${masq[@]}"
  in_ns "$ns" iptables -P FORWARD DROP
  in_ns "$ns" iptables -A FORWARD -i br0 -o wan0 -j ACCEPT
  in_ns "$ns" iptables -A FORWARD -i wan0 -o br0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  # Only reached if bridged frames are handed to iptables after all: hosts of one LAN talk freely.
  in_ns "$ns" iptables -A FORWARD -i br0 -o br0 -j ACCEPT
  in_ns "$ns" iptables -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  in_ns "$ns" iptables -A INPUT -i wan0 -j DROP
}

build() {
  local tag=$1 kind=$2 entry name addr role ns router
  add_ns "$tag-wan"
  add_bridge "$tag-wan" br0
  for entry in "${HOSTS[@]}"; do
    read -r name addr role <<<"$entry"
    ns=$tag-$name
    add_ns "$ns"
    case $role in
      public)
        # The WAN bridge's port is named after the host it leads to.
        add_veth "$tag-wan" "$name" "$ns" eth0
        ip -n "$tag-wan" link set "$name" master br0
        ip -n "$ns" addr add "$addr/24" dev eth0
        ;;
      router)
        add_veth "$tag-wan" "$name" "$ns" wan0
        ip -n "$tag-wan" link set "$name" master br0
        ip -n "$ns" addr add "$addr/24" dev wan0
        add_bridge "$ns" br0
        ip -n "$ns" addr add "$LAN_GATEWAY/24" dev br0
        router_firewall "$ns" "$kind"
        ;;
      home:*)
        router=$tag-${role#home:}
        add_veth "$router" "$name" "$ns" eth0
        ip -n "$router" link set "$name" master br0
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 multicast on
        ip -n "$ns" route add default via "$LAN_GATEWAY" dev eth0
        # mDNS: multicast stays on the home's LAN (the router does not forward it).
        ip -n "$ns" route add 224.0.0.0/4 dev eth0
        ;;
    esac
  done
}

building=
remove_half_built() {
  local rc=$?
  if ((rc != 0)) && [[ -n $building ]]; then
    echo "nat-lab: building lab $building failed; removing it" >&2
    down "$building"
  fi
  exit "$rc"
}

up() {
  local tag=$1 kind=$2 name
  check_tag "$tag"
  [[ $kind == eim || $kind == random ]] || die "KIND must be eim or random, not '$kind'"
  [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces)"
  command -v ip >/dev/null || die "needs iproute2 (scripts/setup.sh installs it)"
  command -v iptables >/dev/null || die "needs iptables (scripts/setup.sh installs it)"
  for name in "${NAMES[@]}"; do
    ! ns_exists "$tag-$name" || die "lab $tag is (partly) up already: run 'down $tag' first"
  done
  # A half-built lab is removed again.
  building=$tag
  trap remove_half_built EXIT
  # An explicit exit status, so that the EXIT trap sees the failure.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  build "$tag" "$kind"
  trap - EXIT INT TERM
  echo "nat-lab: lab $tag is up (NAT kind $kind)"
}

down() {
  local tag=$1 name ns pids
  check_tag "$tag"
  for name in "${NAMES[@]}"; do
    ns=$tag-$name
    ns_exists "$ns" || continue
    # Processes left in the namespace would keep it (and its interfaces) alive unnamed.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
      # shellcheck disable=SC2086 # one PID per word
      kill -TERM $pids 2>/dev/null || true
      for _ in $(seq 1 30); do
        [[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] && break
        sleep 0.1
      done
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      # shellcheck disable=SC2086
      [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  return 0
}

hosts() {
  local tag=$1 entry name addr role
  check_tag "$tag"
  ns_exists "$tag-wan" || die "lab $tag is not up"
  for entry in "${HOSTS[@]}"; do
    read -r name addr role <<<"$entry"
    echo "$name $tag-$name $addr"
  done
}

case ${1:-} in
  up) (($# == 3)) || usage; up "$2" "$3" ;;
  down) (($# == 2)) || usage; down "$2" ;;
  hosts) (($# == 2)) || usage; hosts "$2" ;;
  *) usage ;;
esac
