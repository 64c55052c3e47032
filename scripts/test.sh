#!/usr/bin/env bash
# Runs every test of the workspace: the README's test command, and what CI runs.
# Installs what the tests need on a fresh machine first (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
