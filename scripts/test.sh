#!/usr/bin/env bash
# Runs the whole test suite. Every test that needs Redis starts its own
# redis-server on a free port; nothing touches a shared Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo test --workspace "$@"
