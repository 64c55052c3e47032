#!/usr/bin/env bash
# Runs every test of the workspace: the README's test command, and what CI runs.
# Installs what the tests need on a fresh machine first (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The Docker tests run the locally built toolbox image; no registry is contacted.
scripts/build-images.sh
# The end-to-end tests run the real binaries, so build them all first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
