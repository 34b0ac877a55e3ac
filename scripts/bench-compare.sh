#!/usr/bin/env bash
# Compares, in one run on one machine and one redis-server:
#   - Redis's own ceiling for the same payload: redis-benchmark running
#     XADD bench:stream MAXLEN ~ 10000 * data <payload>, with -P 1 and -P 64
#     (50 clients, redis-benchmark's default);
#   - a baseline that behaves like the ORION Python bus (redis-py +
#     jsonschema Draft202012Validator, one XADD per publish, XREADGROUP
#     COUNT 10 BLOCK 1000, one XACK per message): bench/python/pybus_baseline.py;
#   - orion-bus bench (publish single and pipelined, e2e, rate).
# and prints a table with the ratios. Raw JSON results go to
# target/bench-results/<time>/. See docs/BENCHMARKS.md.
#
# Usage: scripts/bench-compare.sh
# Environment:
#   BENCH_DURATION      seconds per timed run (default 10)
#   BENCH_PAYLOAD       message size in bytes (default: the sample's natural 242)
#   BENCH_CONSUMERS     orion-bus e2e consumers (default 20)
#   BENCH_PY_CONSUMERS  Python baseline e2e consumer processes (default 1)
#   BENCH_N_P1 / BENCH_N_P64  redis-benchmark requests (default 200000 / 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=${BENCH_DURATION:-10}
consumers=${BENCH_CONSUMERS:-20}
py_consumers=${BENCH_PY_CONSUMERS:-1}
n_p1=${BENCH_N_P1:-200000}
n_p64=${BENCH_N_P64:-2000000}
payload_arg=()
if [ -n "${BENCH_PAYLOAD:-}" ]; then payload_arg=(--payload-bytes "$BENCH_PAYLOAD"); fi

say() { echo "bench-compare: $*" >&2; }

# redis-server, redis-tools (redis-benchmark, redis-cli), python3-venv.
scripts/install-deps.sh
for tool in redis-server redis-benchmark redis-cli python3; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool not found (install redis-server, redis-tools, python3)"; exit 1; }
done

say "building orion-bus (release)"
cargo build --release -q -p orion-bus-cli
bus=$root/target/release/orion-bus

venv=$root/target/bench-pyenv
if ! "$venv/bin/python" -c 'import redis, jsonschema' >/dev/null 2>&1; then
  say "creating $venv with redis-py and jsonschema"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q redis jsonschema
fi
py=$venv/bin/python
baseline=$root/bench/python/pybus_baseline.py

out=$root/target/bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
cleanup() {
  if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
  sleep 0.2
  rm -rf "$dir"
}
trap cleanup EXIT
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$port" ping >/dev/null
say "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on port $port"
url=redis://127.0.0.1:$port
{
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel: $(uname -r)"
  echo "redis-server: $(redis-server --version)"
  echo "rustc: $(rustc --version)"
  echo "python: $("$py" --version 2>&1)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

payload=$("$py" "$baseline" payload "${payload_arg[@]}")
bytes=$(printf %s "$payload" | wc -c)
say "payload: $bytes bytes"

redis_bench() { # pipeline requests -> rps
  redis-benchmark -p "$port" -n "$2" -P "$1" --csv XADD bench:stream MAXLEN '~' 10000 '*' data "$payload" \
    | tail -n 1 | awk -F'","' '{print $(NF-6)}'
  redis-cli -p "$port" del bench:stream >/dev/null
}
say "redis-benchmark -P 1 ($n_p1 requests)"
rb_p1=$(redis_bench 1 "$n_p1")
say "redis-benchmark -P 64 ($n_p64 requests)"
rb_p64=$(redis_bench 64 "$n_p64")
printf '{"rps_p1": %s, "rps_p64": %s, "payload_bytes": %s}\n' "$rb_p1" "$rb_p64" "$bytes" >"$out/redis-benchmark.json"

say "Python baseline: publish (${duration}s)"
"$py" "$baseline" publish --port "$port" --duration "$duration" "${payload_arg[@]}" >"$out/py-publish.json"
say "Python baseline: e2e, $py_consumers consumer process(es) (${duration}s)"
"$py" "$baseline" e2e --port "$port" --duration "$duration" --consumers "$py_consumers" "${payload_arg[@]}" >"$out/py-e2e.json"

run_bus() { # name args...
  local name=$1
  shift
  say "orion-bus bench $*"
  "$bus" bench "$@" --duration "${duration}s" --redis-url "$url" --json "${payload_arg[@]}" >"$out/$name.json"
}
run_bus bus-publish-single publish --pipeline 1 --publishers 1
run_bus bus-publish-pipelined publish --pipeline 64 --publishers 2
run_bus bus-e2e e2e --consumers "$consumers"
run_bus bus-rate-1000 rate --rate 1000
run_bus bus-rate-5000 rate --rate 5000

python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)
rb = load("redis-benchmark")
rows = [
    ("redis-benchmark XADD -P 1 (50 clients)", {"throughput_msgs_per_s": rb["rps_p1"]}),
    ("redis-benchmark XADD -P 64 (50 clients)", {"throughput_msgs_per_s": rb["rps_p64"]}),
    ("Python baseline publish", load("py-publish")),
    ("Python baseline e2e", load("py-e2e")),
    ("orion-bus publish, single", load("bus-publish-single")),
    ("orion-bus publish, pipeline 64 x 2", load("bus-publish-pipelined")),
    ("orion-bus e2e", load("bus-e2e")),
    ("orion-bus rate 1000/s", load("bus-rate-1000")),
    ("orion-bus rate 5000/s", load("bus-rate-5000")),
]
def f(v, fmt):
    width = int(fmt.split(".")[0])
    return "-".rjust(width) if v is None else format(v, fmt)
print(open(os.path.join(out, "machine.txt")).read().rstrip())
print(f"payload {rb['payload_bytes']} bytes; results in {out}")
print(f"{'run':<40} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'RSS MiB':>8} {'CPU %':>6}")
for name, r in rows:
    rss = r.get("peak_rss_bytes")
    print(f"{name:<40} {f(r.get('throughput_msgs_per_s'), '9.0f')} {f(r.get('p50_ms'), '8.3f')} "
          f"{f(r.get('p99_ms'), '8.3f')} {f(r.get('p999_ms'), '9.3f')} "
          f"{f(rss / 1048576 if rss else None, '8.1f')} {f(r.get('cpu_percent_of_one_core'), '6.1f')}")
t = {name: r["throughput_msgs_per_s"] for name, r in rows}
print()
print("ratios")
ratios = [
    ("orion-bus pipelined publish / redis-benchmark -P 64", t["orion-bus publish, pipeline 64 x 2"] / t["redis-benchmark XADD -P 64 (50 clients)"], "target >= 0.5"),
    ("orion-bus single publish / redis-benchmark -P 1", t["orion-bus publish, single"] / t["redis-benchmark XADD -P 1 (50 clients)"], ""),
    ("orion-bus single publish / Python publish", t["orion-bus publish, single"] / t["Python baseline publish"], ""),
    ("orion-bus pipelined publish / Python publish", t["orion-bus publish, pipeline 64 x 2"] / t["Python baseline publish"], "target >= 50"),
    ("orion-bus e2e / Python e2e", t["orion-bus e2e"] / t["Python baseline e2e"], "target >= 50"),
]
for name, v, target in ratios:
    print(f"  {name:<55} {v:8.2f}  {target}")
EOF
