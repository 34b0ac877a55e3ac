#!/usr/bin/env bash
# Installs what orion-bus needs beyond a Rust toolchain, on Debian/Ubuntu:
# a C compiler and linker, redis-server (the demo, tests and benchmarks
# start private instances of it) and python3 with venv (the interop tests
# run a redis-py client).
# Does nothing for what is already there.
set -euo pipefail

need=()
# rustup brings no C toolchain: rustc links through cc, and ring (TLS)
# compiles C and assembly. A fresh minimal Debian/Ubuntu has neither.
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# redis-tools has redis-cli and redis-benchmark (scripts/bench-compare.sh).
{ command -v redis-cli && command -v redis-benchmark; } >/dev/null 2>&1 || need+=(redis-tools)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

if ((${#need[@]})); then
  echo "install-deps: installing ${need[*]}" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install ${need[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
