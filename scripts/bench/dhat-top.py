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
import re
import sys

TOP = 15
# Frames that say nothing about who asked for the memory.
NOISE = re.compile(r"(^|\s|<)(alloc::|core::|std::|dhat::|hashbrown::|__rust|<alloc|<core|"
                   r"bytes::|tokio::runtime|\[unknown\]|0x[0-9a-f]+:\s*$)")


def sites(path):
    d = json.load(open(path))
    frames = d["ftbl"]
    out = {}
    for pp in d["pps"]:
        names = [frames[i] for i in pp["fs"]]
        # The first frames outside the allocator and the standard library.
        useful = [re.sub(r"^0x[0-9a-f]+: ", "", f) for f in names if not NOISE.search(f)]
        own = [f for f in useful if "soakd::" in f or "src/" in f]
        key = " ← ".join((own or useful)[:2]) or "(no symbol)"
        s = out.setdefault(key, {"gb": 0, "eb": 0, "tb": 0, "tbk": 0, "detail": useful[:4]})
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
