#!/usr/bin/env python3
"""Sorts the samples of an orion-bus perf profile into the bus's components.

Usage (docs/BENCHMARKS.md has the exact runs):
  perf record -F 499 --call-graph dwarf,32768 -o perf.data -- \
      target/release/orion-bus bench e2e --duration 6s --redis-url URL --json
  perf script -i perf.data -F comm,tid,ip,sym | python3 bench/perf_classify.py -

Each sample of the orion-bus process (redis-server's and idle samples are
left out) goes to the first component whose function appears anywhere in
its call stack; samples in none of them go by their leaf frames (syscalls,
thread wake-ups, malloc) or by the first orion-bus, redis-rs or tokio frame.
Generic parameters are stripped from frame names before matching. DWARF
stacks are cut at 32 KiB, so the outermost frames of deep async stacks can
be missing: that is why validation is not split into publish and consume.
"""

import collections
import re
import sys

COMPONENTS = [
    ("bench harness: build/restamp messages", ["bench::Messages::make", "bench::stamp", "bench::restamp"]),
    ("bench harness: record latency, window", ["hdrhistogram", "bench::read_stamp", "Semaphore::add_permits"]),
    ("validate (jsonschema, publish and consume)", ["jsonschema"]),
    ("publish: encode JSON (wire::encode)", ["wire::encode", "PythonFormatter"]),
    ("consume: decode JSON (wire::decode_data, serde_json)",
     ["wire::decode_data", "serde_json::de::from_str", "serde_json::de::from_trait", "RawEntry::decode"]),
    ("consume: XREADGROUP reply -> entries (wire::parse_read_reply)", ["wire::parse_read_reply", "wire::parse_entries"]),
    ("RESP parsing of replies (redis-rs)", ["redis::parser", "ValueCodec", "combine::"]),
    ("RESP encoding of commands (redis-rs Cmd::arg, write_command)",
     ["redis::cmd::write_command", "write_arg", "redis::cmd::Cmd::arg", "write_pipeline", "encode_pipeline"]),
]
LEAF = [
    ("thread park/wake (futex, epoll, context switch)",
     ["futex", "epoll", "finish_task_switch", "try_to_wake_up", "eventfd", "__schedule", "schedule_hrtimeout", "park_condvar"]),
    ("socket writes (writev; on loopback this runs Redis's receive path and wake-up)", ["writev", "sock_write_iter", "tcp_sendmsg"]),
    ("socket reads (recvfrom)", ["recvfrom", "tcp_recvmsg", "sock_read"]),
    ("malloc/free", ["malloc", "_int_free", "cfree", "realloc", "unlink_chunk", "malloc_consolidate"]),
]
OWNER = [
    ("consumer plumbing (reader, workers, acker, in-flight tracking)", "orion_bus::consumer"),
    ("publish plumbing (Bus::prepare, xadd, publisher loop)", "orion_bus::bus"),
    ("publish plumbing (Bus::prepare, xadd, publisher loop)", "orion_bus::bench"),
    ("redis-rs connection plumbing", "redis::"),
    ("tokio runtime and sync", "tokio::"),
]


def strip(frame):
    prev = None
    while prev != frame:
        prev = frame
        frame = re.sub(r"<[^<>]*>", "", frame)
    return frame


def classify(stack):
    for name, pats in COMPONENTS:
        if any(p in f for f in stack for p in pats):
            return name
    leaf = []
    for f in stack:
        if "::" in f and not f.startswith("std::sys"):
            break
        leaf.append(f)
    for name, pats in LEAF:
        if any(p in f for f in leaf for p in pats):
            return name
    for f in stack:
        for name, pat in OWNER:
            if f.startswith(pat) or ("{" + pat) in f:
                return name
    return "other"


def samples(lines):
    stack, keep = [], False
    for line in lines:
        if not line.strip():
            if stack and keep:
                yield stack
            stack = []
            continue
        if not line.startswith(("\t", " ")):
            if stack and keep:
                yield stack
            stack = []
            keep = not line.startswith(("redis-server", "swapper", "perf"))
            continue
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            stack.append(strip(parts[1]))
    if stack and keep:
        yield stack


def main():
    src = sys.stdin if len(sys.argv) < 2 or sys.argv[1] == "-" else open(sys.argv[1], errors="replace")
    counts = collections.Counter(classify(s) for s in samples(src))
    total = sum(counts.values()) or 1
    for name, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")
    print(f"({total} samples of orion-bus)")


if __name__ == "__main__":
    main()
