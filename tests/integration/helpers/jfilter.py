#!/usr/bin/python3
"""Read journal JSON lines on stdin; print the first entry whose fields match
every KEY=VALUE argument (KEY=  alone means: field absent); exit 1 if none."""
import json
import sys

want = [a.split("=", 1) for a in sys.argv[1:]]
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    ok = True
    for k, v in want:
        got = e.get(k)
        if isinstance(got, list):
            got = got[0]
        if v == "":
            ok = ok and got is None
        else:
            ok = ok and got == v
    if ok:
        print(json.dumps(e))
        sys.exit(0)
sys.exit(1)
