#!/usr/bin/env python3
"""Sums a dhat heap profile (dhat-heap.json) by allocation site, per call.

    tools/heap-sites.py PROFILE CALLS [gb|eb]

gb: bytes live at the heap's peak (a load run's steady state; the gateway built with
`--features dhat-heap` writes its profile when it stops); eb: bytes live when the profile was
written (server/media/tests/heap.rs writes it with every session live). Prints the total per
call, the share of each of imsgw's modules, then the 40 biggest sites (first frame outside the
standard library, and the imsgw function that led there).
"""
import collections
import json
import re
import sys

path, calls = sys.argv[1], int(sys.argv[2])
key = sys.argv[3] if len(sys.argv) > 3 else "gb"
d = json.load(open(path))
ft = d["ftbl"]
SKIP = ("alloc::", "core::", "dhat", "std::", "<alloc", "hashbrown", "<core", "__rust",
        "<hashbrown", "bytes::", "<bytes")


def name(frame):
    m = re.search(r": (.*?) \(", frame)
    return m.group(1) if m else frame


modules, sites, total = collections.Counter(), collections.Counter(), 0
for pp in d["pps"]:
    b = pp[key]
    if not b:
        continue
    total += b
    frames = [name(ft[i]) for i in pp["fs"][1:]]
    ours = next((f for f in frames if re.match(r"<?imsgw", f)), "?")
    first = next((f for f in frames if not f.startswith(SKIP)), "?")
    modules[re.sub(r"::[^:]*$", "", ours)[:80]] += b
    sites[(first[:90], ours[:70])] += b
kib = lambda b: f"{b / calls / 1024:7.2f}"
print(f"{kib(total)} KiB per call in all ({key})")
for m, b in modules.most_common(20):
    print(f"{kib(b)} {m}")
print()
for (first, ours), b in sites.most_common(40):
    print(f"{kib(b)} {first}  [{ours}]")
