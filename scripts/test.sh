#!/usr/bin/env bash
# Runs the whole test suite. Every test that needs Redis starts its own
# redis-server on a free port; nothing touches a shared Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The tests of ORION's 14 real contracts run only where the contracts are;
# say which, where it shows (cargo hides what passing tests print).
contracts="${ORION_CONTRACTS_DIR:-$(pwd)/../shared/orion-contracts}"
if [ -d "$contracts" ]; then
  echo "ORION contracts found at $contracts: their tests run."
else
  echo "SKIPPED: ORION contracts not found at $contracts (set ORION_CONTRACTS_DIR);"
  echo "         the tests that need them pass without checking anything."
fi
# `orion-bus codegen` is a feature of the binary (off by default, so the
# runtime binary does not link the code generator); its tests need it.
exec cargo test --workspace --features orion-bus-cli/codegen "$@"
