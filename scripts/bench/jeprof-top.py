#!/usr/bin/env python3
"""Names the live bytes in jemalloc heap profiles from a `PROFILE=jemalloc-prof` long soak:
the allocation sites holding the most, per process, after given operation counts.

    scripts/bench/jeprof-top.py OUT 1000000 10000000

OUT is the soak's output directory: its jeprof.csv (which profile was written after how
many operations), the profiles, and the binary that wrote them (`OUT/soakd`, which jeprof
needs for symbols; jeprof itself is in Debian's libjemalloc-dev). For each process and
each count it takes the AROUND profiles written nearest that count (default 5) and, per
site, the median of their bytes: jemalloc samples one allocation per 2^lg_prof_sample
bytes and scales it up, so a long-lived structure is the same sample in every profile
while the bytes in flight differ from one to the next, and the median steadies them. A
site is what allocated (the first frame outside the allocator and the standard library)
and where soakd's own code asked for it (its first DEPTH functions on the stack, default 2:
`metrics::window::Window::new ← slo::Tracker::new`). With two counts it
prints the difference too: a bounded structure shows the same bytes at both, a leak a
difference that grows with the operations.
"""
import csv
import os
import re
import statistics
import subprocess
import sys

TOP = 20
AROUND = int(os.environ.get("AROUND", "5"))
# How many of soakd's own functions name a site's caller chain.
DEPTH = int(os.environ.get("DEPTH", "2"))
# Frames that say how memory was allocated, not who asked: jemalloc and its profiler, the
# global-allocator shims, the standard library's collections and formatting.
HOW = re.compile(r"^(_rjem_|je_|prof_|do_rallocx|imalloc|ialloc|__rust|__rdl|__rg_|"
                 r"tikv_jemallocator|<tikv_jemallocator|alloc::|<alloc::|core::|<core::|"
                 r"std::|<std::|hashbrown::|<hashbrown::|_start$|__libc|clone3$|start_thread$|"
                 r"main$)")
ADDR = re.compile(r"<[0-9a-f]{8,}>$")


def name(frame):
    return ADDR.sub("", frame.strip())


def own(frame):
    return frame.startswith("soakd::") or frame.startswith("<soakd::")


def short(frame):
    """soakd's own functions by their module path; anything else by its crate and its
    last two segments (`hdrhistogram::Histogram::resize`); generics dropped."""
    f = frame
    while re.search(r"<[^<>]*>", f):
        # Innermost first: generic arguments go (`Histogram<T>`), a qualified path keeps
        # its type (`<Value as Deserialize>`, `<impl Deserialize for Value>`).
        f = re.sub(r"(\w)<[^<>]*>", r"\1", f)
        f = re.sub(r"<impl [^<>]* for ([^<>]*)>", r"\1", f)
        f = re.sub(r"<([^<>]*?) as [^<>]*>", r"\1", f)
        f = re.sub(r"<([^<>]*)>", r"\1", f)
    segs = [s for s in f.split("::") if s and s not in ("{{closure}}", "_")]
    if "soakd" in segs:  # serde's derive nests its impls: config::_::soakd::config::…
        segs = segs[len(segs) - 1 - segs[::-1].index("soakd"):]
    closure = "::{{closure}}" if frame.endswith("{{closure}}") else ""
    if segs and segs[0] == "soakd":
        return "::".join(segs[1:]) + closure
    if len(segs) > 3:
        segs = [segs[0], "…"] + segs[-2:]
    return "::".join(segs) + closure


def site(frames):
    """frames: outermost first, as jeprof --collapsed prints them. What allocated, then
    the first DEPTH functions of soakd's own that led there (closures folded into their
    function), innermost first."""
    inner = [name(f) for f in reversed(frames)]
    what = next((f for f in inner if not HOW.match(f)), inner[0] if inner else "?")
    chain = []
    for f in inner:
        if own(f):
            s = short(f).removesuffix("::{{closure}}")
            if s not in chain:
                chain.append(s)
        if len(chain) == DEPTH:
            break
    w = short(what)
    if chain and chain[0] == w.removesuffix("::{{closure}}"):
        chain = chain[1:] if len(chain) > 1 else []
        w = w.removesuffix("::{{closure}}")
    return " ← ".join([w] + chain)


def profile(binary, path):
    """{site: bytes} for one heap profile."""
    out = subprocess.run(["jeprof", "--collapsed", binary, path], check=True,
                         capture_output=True, text=True).stdout
    sites = {}
    for line in out.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        k = site(stack.split(";"))
        sites[k] = sites.get(k, 0) + int(n)
    return sites


def nearest(rows, component, ops):
    mine = [r for r in rows if r["component"] == component]
    mine.sort(key=lambda r: abs(int(r["ops"]) - ops))
    return sorted(mine[:AROUND], key=lambda r: int(r["ops"]))


def median_sites(binary, out, picked):
    """picked: at least one jeprof.csv row."""
    profiles = [profile(binary, os.path.join(out, r["profile"])) for r in picked]
    med = {k: statistics.median(p.get(k, 0) for p in profiles) for k in set().union(*profiles)}
    totals = [sum(p.values()) for p in profiles]
    return med, statistics.median(totals), totals


def kib(b):
    return f"{b / 1024:,.0f}"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = sys.argv[1]
    counts = [int(c) for c in sys.argv[2:]]
    binary = os.path.join(out, "soakd")
    with open(os.path.join(out, "jeprof.csv")) as f:
        rows = list(csv.DictReader(f))
    for component in ("soakd", "target"):
        got = []
        for c in counts:
            picked = nearest(rows, component, c)
            if not picked:
                continue
            med, total, totals = median_sites(binary, out, picked)
            got.append((c, med, total))
            lo, hi = int(picked[0]["ops"]), int(picked[-1]["ops"])
            print(f"### {component}, {len(picked)} profiles nearest {c:,} operations "
                  f"({lo:,}-{hi:,}; {picked[0]['profile']} … {picked[-1]['profile']})\n")
            print(f"sampled live heap, median: {kib(total)} KiB "
                  f"(each: {', '.join(kib(t) for t in totals)})\n")
            print("| KiB (median) | share | site |")
            print("|---:|---:|---|")
            for k, b in sorted(med.items(), key=lambda kv: -kv[1])[:TOP]:
                print(f"| {kib(b)} | {100 * b / total:.1f} % | `{k}` |")
            print()
        if len(got) >= 2:
            (c1, a, ta), (c2, b, tb) = got[0], got[-1]
            print(f"### {component}: {c1:,} → {c2:,} operations\n")
            print(f"sampled live heap, median: {kib(ta)} → {kib(tb)} KiB ({kib(tb - ta)})\n")
            print("| KiB at first | at second | difference | site |")
            print("|---:|---:|---:|---|")
            keys = set(a) | set(b)
            # The largest either way, so a site that grew or shrank shows.
            for k in sorted(keys, key=lambda k: -max(a.get(k, 0), b.get(k, 0)))[:TOP]:
                x, y = a.get(k, 0), b.get(k, 0)
                print(f"| {kib(x)} | {kib(y)} | {kib(y - x)} | `{k}` |")
            print()


if __name__ == "__main__":
    main()
