#!/usr/bin/env bash
# Installs what building and testing DistributeAI needs beyond a Rust toolchain, on a fresh
# Debian machine. Safe to run again: it only installs what is missing.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v g++ >/dev/null || need_apt+=(g++) # libfuzzer-sys, for building the fuzz target
command -v ip >/dev/null || need_apt+=(iproute2) # the mDNS test builds its own LAN in namespaces
command -v iptables >/dev/null || need_apt+=(iptables) # the NAT lab test builds home routers in namespaces
command -v tmux >/dev/null || need_apt+=(tmux)    # the TUI test drives a real terminal
# The observability tests: promtool checks /metrics, a real Prometheus scrapes a local network,
# and the dashboard runs in a real headless browser driven over WebDriver.
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: please install: ${need_apt[*]} (or run this script as root)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
