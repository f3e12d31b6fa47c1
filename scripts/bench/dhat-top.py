#!/usr/bin/env python3
"""Summarises dhat heap profiles (from the `dhat-heap` build): the allocation sites that
hold the most bytes at the peak of the live heap (t-gmax) and at exit (t-end), named by
their first frames in soakd's own code.

    scripts/bench/dhat-top.py soakd-1M.json [soakd-10M.json]   # two: what grew between

With two profiles (the same workload stopped after 1 M and after 10 M operations) it
prints, per site, the bytes at t-gmax in each and the difference, largest growth first:
a bounded structure shows the same bytes in both, a leak shows a difference that scales
with the operations.
"""
import json
import os
import re
import sys

TOP = 15
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# soakd's own source files, as the profile's frames name them (`src/drivers/grpc.rs`).
OWN = {os.path.relpath(os.path.join(d, f), ROOT)
       for d, _, fs in os.walk(os.path.join(ROOT, "src")) for f in fs if f.endswith(".rs")}
# The allocator and the standard library's collections: they say how, not who.
STD = re.compile(r"^(alloc|core|std)/|^src/(vec|raw_vec|string|boxed|collections|sync|rc|fmt|"
                 r"alloc|slice|str|ffi|io|iter|ops)\b|^(collections|btree)/|^dhat-[0-9]")
FRAME = re.compile(r"^(?:0x[0-9a-f]+: )?(.*) \(([^():]+):\d+:\d+\)$")


def location(frame):
    m = FRAME.match(frame)
    return (m.group(1), m.group(2)) if m else (frame, "")


CRATE = re.compile(r"^[A-Za-z0-9_.-]+-[0-9]+\.[0-9]+")  # registry crates: `bytes-1.12.1/src/...`


def own(path):
    return not CRATE.match(path) and any(path == f or path.endswith("/" + f) for f in OWN)


def site(names):
    """What allocated (the first frame outside the allocator and std) and where in
    soakd's code it was asked for (the first frame in src/)."""
    frames = [location(f) for f in names]
    frames = [(fn, p) for fn, p in frames if not fn.startswith("__rust")]
    rest = [(fn, p) for fn, p in frames if p and not STD.search(p)]
    what = f"{rest[0][0].split('<')[0]} ({rest[0][1]})" if rest else "(no symbol)"
    where = next((f"{fn.split('<')[0]} ({p})" for fn, p in frames if own(p)), "")
    return what if not where or where == what else f"{what} ← {where}"


def sites(path):
    d = json.load(open(path))
    frames = d["ftbl"]
    out = {}
    for pp in d["pps"]:
        key = site([frames[i] for i in pp["fs"]])
        s = out.setdefault(key, {"gb": 0, "eb": 0, "tb": 0, "tbk": 0})
        s["gb"] += pp.get("gb", 0)
        s["eb"] += pp.get("eb", 0)
        s["tb"] += pp.get("tb", 0)
        s["tbk"] += pp.get("tbk", 0)
    total = {"gb": sum(s["gb"] for s in out.values()), "eb": sum(s["eb"] for s in out.values()),
             "tbk": sum(s["tbk"] for s in out.values())}
    return out, total


def kib(b):
    return f"{b / 1024:,.0f}"


def one(path):
    out, total = sites(path)
    print(f"### {path}\n")
    print(f"live at the peak (t-gmax): {kib(total['gb'])} KiB; at exit (t-end): {kib(total['eb'])} KiB; "
          f"allocations: {total['tbk']:,}\n")
    print("| KiB at t-gmax | KiB at t-end | allocations | site |")
    print("|---:|---:|---:|---|")
    for k, s in sorted(out.items(), key=lambda kv: -kv[1]["gb"])[:TOP]:
        print(f"| {kib(s['gb'])} | {kib(s['eb'])} | {s['tbk']:,} | `{k}` |")
    print()


def compare(a, b):
    sa, ta = sites(a)
    sb, tb = sites(b)
    print(f"### {a} → {b}\n")
    print(f"live at the peak: {kib(ta['gb'])} → {kib(tb['gb'])} KiB; allocations {ta['tbk']:,} → {tb['tbk']:,}\n")
    print("| KiB at t-gmax, first | second | difference | site |")
    print("|---:|---:|---:|---|")
    keys = set(sa) | set(sb)
    rows = sorted(keys, key=lambda k: -(sb.get(k, {}).get("gb", 0) - sa.get(k, {}).get("gb", 0)))
    for k in rows[:TOP]:
        x = sa.get(k, {}).get("gb", 0)
        y = sb.get(k, {}).get("gb", 0)
        print(f"| {kib(x)} | {kib(y)} | {kib(y - x)} | `{k}` |")
    print()


if __name__ == "__main__":
    if len(sys.argv) == 2:
        one(sys.argv[1])
    elif len(sys.argv) == 3:
        one(sys.argv[1])
        one(sys.argv[2])
        compare(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
