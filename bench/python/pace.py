"""Publishes one message at a fixed rate, the way the ORION Python bus does.

Usage: pace.py RATE SECONDS REDIS_URL [STREAM] < message.json

Each second RATE times: XADD STREAM MAXLEN ~ 10000 * data <json.dumps(msg)>,
on a schedule that does not drift. STREAM defaults to orion:sensor.readings.
Used to feed a consumer running in a process of its own (docs/BENCHMARKS.md,
"a consumer alone").
"""

import json
import sys
import time

import redis


def main() -> None:
    rate, seconds, url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    stream = sys.argv[4] if len(sys.argv) > 4 else "orion:sensor.readings"
    message = json.loads(sys.stdin.read())
    client = redis.Redis.from_url(url)
    start = time.monotonic()
    for n in range(rate * seconds):
        due = start + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        client.xadd(stream, {"data": json.dumps(message)}, maxlen=10000, approximate=True)


if __name__ == "__main__":
    main()
