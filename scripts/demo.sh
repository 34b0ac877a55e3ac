#!/usr/bin/env bash
# Runs the orion-bus demo against a throwaway redis-server it starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run --release --quiet -p orion-bus-cli -- demo "$@"
