#!/usr/bin/env bash
# Runs the orion-bus demo against a throwaway redis-server it starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Say it before cargo starts: the first release build compiles a few hundred
# crates and takes minutes (about 10 on 2 cores), and the demo itself runs in
# under a second. Cargo shows its progress (no --quiet), so it never looks hung.
echo "demo.sh: building orion-bus in release mode; the first build takes several minutes" \
  "(about 10 on 2 cores), later ones seconds. Cargo's progress follows." >&2
exec cargo run --release -p orion-bus-cli -- demo "$@"
