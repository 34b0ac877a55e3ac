#!/usr/bin/env python3
"""A baseline that behaves like the ORION Python bus, for scripts/bench-compare.sh.

It does per message what the Python bus does: validate with jsonschema's
Draft202012Validator (no format checker), json.dumps, one XADD ... MAXLEN ~
10000 per publish; consumers read with XREADGROUP COUNT 10 BLOCK 1000,
json.loads and validate each entry, call the handler, then XACK it alone.

Scenarios (each prints one JSON object with the keys orion-bus bench uses):
  publish  one publisher, synchronous publishes, for --duration seconds
  e2e      one publisher process and --consumers consumer processes in one
           group; the publisher keeps at most 4096 messages unhandled (so
           MAXLEN ~ 10000 never trims an unread entry); latency is
           publish-to-handler (time.monotonic_ns stamped before validation)
  payload  print one message of --payload-bytes bytes (for redis-benchmark)

Messages are the example contract sensor.reading, shaped and padded exactly
as orion-bus bench does, with the timestamp in tags.bench_t.
"""

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid

import redis
from jsonschema import Draft202012Validator

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "contracts", "sensor.reading.schema.json")
STAMP_WIDTH = 20
WINDOW = 4096
GROUP = "bench"


def validator():
    with open(SCHEMA) as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)  # no format checker, as the Python bus


def sample(n, ts, pad):
    sensors = ["temperature", "humidity", "power"]
    return {
        "version": "1.0",
        "reading_id": str(uuid.UUID(int=(n * 0x9E3779B97F4A7C15F39CC0605CEDC835) % (1 << 128), version=4)),
        "timestamp": "2026-11-24T10:00:00Z",
        "source": f"sensor-{n % 7}",
        "sensor": sensors[n % 3],
        "value": 20.5 + (n % 10),
        "tags": {"room": "lab", "bench_t": f"{ts:0{STAMP_WIDTH}d}", "pad": pad},
    }


def pads(payload_bytes):
    """Padding per template so that every message encodes to payload_bytes."""
    out = []
    if payload_bytes is None:
        payload_bytes = max(len(json.dumps(sample(k, 0, ""))) for k in range(64))
    for n in range(64):
        size = len(json.dumps(sample(n, 0, "")))
        if payload_bytes < size:
            sys.exit(f"--payload-bytes {payload_bytes} is too small (need {size})")
        out.append("x" * (payload_bytes - size))
    return out, payload_bytes


def percentiles(lat_ns):
    lat_ns.sort()
    if not lat_ns:
        return {k: 0.0 for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")}

    def q(p):
        return lat_ns[min(len(lat_ns) - 1, int(p * len(lat_ns)))] / 1e6

    return {
        "p50_ms": q(0.5),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": lat_ns[-1] / 1e6,
        "mean_ms": sum(lat_ns) / len(lat_ns) / 1e6,
    }


def usage():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return cpu, max(me.ru_maxrss, kids.ru_maxrss) * 1024


def publish(args):
    r = redis.Redis(host="127.0.0.1", port=args.port)
    stream = f"pybench-{os.getpid()}:sensor.readings"
    v = validator()
    pad, size = pads(args.payload_bytes)
    lat = []
    n = 0
    cpu0, _ = usage()
    start = time.monotonic()
    deadline = start + args.duration
    while time.monotonic() < deadline:
        t0 = time.monotonic_ns()
        msg = sample(n, t0, pad[n % 64])
        v.validate(msg)
        r.xadd(stream, {"data": json.dumps(msg)}, maxlen=10000, approximate=True)
        lat.append(time.monotonic_ns() - t0)
        n += 1
    elapsed = time.monotonic() - start
    cpu1, rss = usage()
    r.delete(stream)
    report = {
        "scenario": "publish",
        "implementation": "python-baseline",
        "payload_bytes": size,
        "messages": n,
        "elapsed_s": elapsed,
        "throughput_msgs_per_s": n / elapsed,
        "latency": "duration of one publish call (validate, json.dumps, XADD round trip)",
        "peak_rss_bytes": rss,
        "cpu_seconds": cpu1 - cpu0,
        "cpu_percent_of_one_core": (cpu1 - cpu0) / elapsed * 100,
        "publishers": 1,
        "consumers": 0,
    }
    report.update(percentiles(lat))
    return report


def consumer(port, stream, name, handled, stop, results):
    r = redis.Redis(host="127.0.0.1", port=port)
    v = validator()
    lat = []
    while not stop.is_set():
        reply = r.xreadgroup(GROUP, name, {stream: ">"}, count=10, block=1000)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                msg = json.loads(fields[b"data"])
                v.validate(msg)
                # The handler: note the publish-to-handler latency.
                lat.append(time.monotonic_ns() - int(msg["tags"]["bench_t"]))
                r.xack(stream, GROUP, entry_id)
                with handled.get_lock():
                    handled.value += 1
    results.put(lat)


def e2e(args):
    r = redis.Redis(host="127.0.0.1", port=args.port)
    stream = f"pybench-{os.getpid()}:sensor.readings"
    r.xgroup_create(stream, GROUP, id="$", mkstream=True)
    v = validator()
    pad, size = pads(args.payload_bytes)
    handled = mp.Value("q", 0)
    stop = mp.Event()
    results = mp.Queue()
    procs = [
        mp.Process(target=consumer, args=(args.port, stream, f"py-{i}", handled, stop, results))
        for i in range(args.consumers)
    ]
    for p in procs:
        p.start()
    n = 0
    start = time.monotonic()
    deadline = start + args.duration
    while time.monotonic() < deadline:
        if n - handled.value >= WINDOW:
            time.sleep(0.0005)
            continue
        t0 = time.monotonic_ns()
        msg = sample(n, t0, pad[n % 64])
        v.validate(msg)
        r.xadd(stream, {"data": json.dumps(msg)}, maxlen=10000, approximate=True)
        n += 1
    give_up = time.monotonic() + 30
    while handled.value < n and time.monotonic() < give_up:
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    done = handled.value
    stop.set()
    lat = []
    for _ in procs:
        lat.extend(results.get())
    for p in procs:
        p.join()
    cpu, rss = usage()
    pending = r.xpending(stream, GROUP)["pending"]
    r.delete(stream)
    report = {
        "scenario": "e2e",
        "implementation": "python-baseline",
        "payload_bytes": size,
        "messages": done,
        "published": n,
        "elapsed_s": elapsed,
        "throughput_msgs_per_s": done / elapsed,
        "latency": "publish-to-handler",
        "peak_rss_bytes": rss,
        "cpu_seconds": cpu,
        "cpu_percent_of_one_core": cpu / elapsed * 100,
        "publishers": 1,
        "consumers": args.consumers,
        "unhandled": n - done,
        "pending": pending,
    }
    report.update(percentiles(lat))
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["publish", "e2e", "payload"])
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds")
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--payload-bytes", type=int, default=None)
    args = ap.parse_args()
    if args.scenario == "payload":
        pad, _ = pads(args.payload_bytes)
        print(json.dumps(sample(0, 0, pad[0])))
        return
    report = publish(args) if args.scenario == "publish" else e2e(args)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
