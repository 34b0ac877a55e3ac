"""The ORION Python bus's wire behaviour, written the way it does it
(plain redis-py, json.dumps / json.loads, one `data` field), for the
interop and migration tests.

usage: python_bus.py publish   PORT STREAM            < NDJSON   -> one id per line
       python_bus.py subscribe PORT STREAM GROUP CONSUMER N      -> {"id", "data"} lines
       python_bus.py raw       PORT STREAM                       -> {"id", "fields_hex"} lines
       python_bus.py encode                            < NDJSON   -> json.dumps(msg) per line
"""
import json
import sys

import redis

mode = sys.argv[1]
if mode == "encode":
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(json.loads(line)))
    sys.exit(0)

port, stream = int(sys.argv[2]), sys.argv[3]
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=False)
if mode == "publish":
    for line in sys.stdin:
        if line.strip():
            msg = json.loads(line)
            entry_id = r.xadd(stream, {"data": json.dumps(msg)}, maxlen=10000, approximate=True)
            print(entry_id.decode())
elif mode == "subscribe":
    group, consumer, want = sys.argv[4], sys.argv[5], int(sys.argv[6])
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    seen = 0
    while seen < want:
        for _, entries in r.xreadgroup(group, consumer, {stream: ">"}, count=10, block=1000) or []:
            for entry_id, fields in entries:
                msg = json.loads(fields[b"data"])
                print(json.dumps({"id": entry_id.decode(), "data": msg}), flush=True)
                r.xack(stream, group, entry_id)
                seen += 1
elif mode == "raw":
    for entry_id, fields in r.xrange(stream):
        print(json.dumps({"id": entry_id.decode(), "fields_hex": {k.hex(): v.hex() for k, v in fields.items()}}))
else:
    sys.exit("unknown mode " + mode)
