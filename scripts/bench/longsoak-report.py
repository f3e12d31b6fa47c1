#!/usr/bin/env python3
"""The long-soak verdict from longsoak.sh's CSV: memory slopes after the warm-up per
process, against the criterion of 1 % per day, and where the bytes are at 1 M / 10 M /
50 M operations.

    scripts/bench/longsoak-report.py /tmp/ls/longsoak.csv --warmup-minutes 10 --mode plain

The verdict is on the process's own memory: anonymous RSS (RssAnon; VmRSS less the
file-backed pages of the binary, which the kernel drops and faults back in at will) and
the allocator's committed heap. Total RSS is reported beside them, and the live heap
(bytes allocated and not freed, from the heap-count build) where the CSV has it: flat
live heap with growing committed or anon memory is the allocator keeping pages, growing
live heap is something holding on to allocations. CSVs from before the anon column are
judged on total RSS.
"""
import argparse
import csv
import math

LIMIT = 1.0  # % per day


def fit(xs, ys):
    """Least squares: slope and its standard error."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs) or 1
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    res = sum((y - my - b * (x - mx)) ** 2 for x, y in zip(xs, ys))
    return b, math.sqrt(res / max(n - 2, 1) / sxx)


def slope(after, key):
    """(first, last, max, %/day, ±95 %) of `key` over the rows that have it, or None."""
    pts = [(int(r["elapsed_s"]), int(r[key])) for r in after if (r.get(key) or "").strip()]
    if len(pts) < 3:
        return None
    t, ys = [p[0] for p in pts], [p[1] for p in pts]
    base = sum(ys[:5]) / len(ys[:5])
    if base <= 0:
        return None
    b, se = fit(t, ys)
    day = 86400 / base * 100
    return ys[0], ys[-1], max(ys), b * day, 1.96 * se * day


def held(after, key):
    """The slope of `key` with the open file descriptors held constant: least squares of
    memory on time and fds together (by Frisch-Waugh: both residualised on fds, then
    fitted). Returns (%/day, ±95 %, KiB per fd) or None. Connections that open in a
    latency burst hold buffers until they idle out; this separates that swing, which is
    bounded by the connection limits, from growth that time alone explains."""
    pts = [(int(r["elapsed_s"]), int(r["fds"]), int(r[key])) for r in after if (r.get(key) or "").strip()]
    if len(pts) < 4:
        return None
    t, f, y = ([p[i] for p in pts] for i in range(3))
    base = sum(y[:5]) / len(y[:5])
    if base <= 0 or all(v == f[0] for v in f):
        return None
    b, se = fit(resid_on(f, t), resid_on(f, y))
    # fit() divides by n - 2; this model has three parameters.
    se *= math.sqrt(max(len(pts) - 2, 1) / max(len(pts) - 3, 1))
    per_fd, _ = fit(resid_on(t, f), resid_on(t, y))  # the mirror image: time held constant
    day = 86400 / base * 100
    return b * day, 1.96 * se * day, per_fd


def resid_on(x, v):
    """`v` less its least-squares line on `x`."""
    b, _ = fit(x, v)
    mx, mv = sum(x) / len(x), sum(v) / len(v)
    return [vi - mv - b * (xi - mx) for vi, xi in zip(v, x)]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2


def levels(rows, warm, width):
    """The median of each memory column per window after the warm-up: a slope says how
    fast, this says whether the level moves from window to window or only swings."""
    print(f"\nLevel by {width // 60}-minute window after the warm-up (medians, MiB):\n")
    print("| process | measure | minutes: median |")
    print("|---|---|---|")
    for comp in ("soakd", "target"):
        after = [r for r in rows if r["component"] == comp and int(r["elapsed_s"]) >= warm]
        if not after:
            continue
        last = max(int(r["elapsed_s"]) for r in after)
        for key, name in (("anon_kib", "anon RSS"), ("heap_kib", "committed"), ("live_kib", "live heap")):
            cells = []
            start = warm
            while True:
                w = [int(r[key]) for r in after
                     if start <= int(r["elapsed_s"]) < start + width and (r.get(key) or "").strip()]
                if not w:
                    break
                cells.append(f"{start // 60}-{min(start + width, last) // 60}: {median(w) / 1024:.2f}")
                start += width
            if cells:
                print(f"| {comp} | {name} | {' · '.join(cells)} |")


def database(path, warm):
    """The target database's tables after the warm-up and at the end: a workload whose
    tables keep growing is not stationary, whatever the processes do."""
    try:
        rows = list(csv.DictReader(open(path)))
    except OSError:
        return
    after = [r for r in rows if int(r["elapsed_s"]) >= warm]
    if len(after) < 2:
        return
    first, last = after[0], after[-1]
    hours = max(int(last["elapsed_s"]) - int(first["elapsed_s"]), 1) / 3600
    grow = (int(last["tables_kib"]) - int(first["tables_kib"])) / 1024
    print(f"\nThe target's database after the warm-up → end: {int(first['live_rows']):,} → "
          f"{int(last['live_rows']):,} live rows, {int(first['dead_rows']):,} → {int(last['dead_rows']):,} dead, "
          f"{int(first['tables_kib']) / 1024:,.0f} → {int(last['tables_kib']) / 1024:,.0f} MiB on disk "
          f"({grow / hours:+,.1f} MiB/h), {first['connections']} → {last['connections']} connections.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--warmup-minutes", type=float, default=10)
    ap.add_argument("--mode", default="?")
    ap.add_argument("--factor", type=float, default=1)
    ap.add_argument("--minutes", default="?")
    ap.add_argument("--stall-every", default="0")
    ap.add_argument("--stall-for", default="0")
    ap.add_argument("--db", help="longsoak.sh's db.csv: the target database's rows and size")
    ap.add_argument("--window-minutes", type=float, default=20,
                    help="the width of the windows whose medians the level table shows")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.csv)))
    warm = int(a.warmup_minutes * 60)

    stall = f", the target stalling {a.stall_for} s every {a.stall_every} s" if a.stall_every != "0" else ""
    print(f"## Long soak: {a.mode} (rates x{a.factor:g}){stall}, {a.minutes} min, slopes after {warm // 60} min\n")
    print("| process | operations | ops/s | RSS after warm-up → end (max) | anon RSS → end | heap committed → end "
          "| live heap → end | RSS %/day | anon RSS %/day | heap %/day | live heap %/day | anon KiB per M ops "
          "| fds | threads | series | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    mib = lambda v: f"{v / 1024:.1f}"
    pm = lambda s: f"{s[3]:+.2f} ± {s[4]:.2f}" if s else "n/a"
    verdicts = []
    for comp in ("soakd", "target"):
        rs = [r for r in rows if r["component"] == comp]
        after = [r for r in rs if int(r["elapsed_s"]) >= warm]
        if len(after) < 3:
            print(f"| {comp} | too few samples after the warm-up ({len(after)}) |")
            verdicts.append(False)
            continue
        rss, anon, heap, live = (slope(after, k) for k in ("rss_kib", "anon_kib", "heap_kib", "live_kib"))
        own = anon or rss
        ok = own[3] < LIMIT and (heap is None or heap[3] < LIMIT)
        verdicts.append(ok)
        key = "anon_kib" if anon else "rss_kib"
        pts = [(int(r["ops"]), int(r[key])) for r in after if (r.get(key) or "").strip()]
        per_mops = fit([p[0] for p in pts], [p[1] for p in pts])[0] if pts[-1][0] > pts[0][0] else float("nan")
        total, secs = int(rs[-1]["ops"]), max(int(rs[-1]["elapsed_s"]), 1)
        span = lambda k: (min(int(r[k]) for r in rs), max(int(r[k]) for r in rs))
        (f_, F), (th, TH), (se_, SE) = span("fds"), span("threads"), span("series")
        then = lambda s: f"{mib(s[0])} → {mib(s[1])} MiB" if s else "n/a"
        print(f"| {comp} | {total:,} | {total / secs:,.0f} | {then(rss)} ({mib(rss[2])}) | {then(anon)} | {then(heap)} "
              f"| {then(live)} | {pm(rss)} | {pm(anon)} | {pm(heap)} | {pm(live)} | {per_mops * 1e6:+.1f} "
              f"| {f_}..{F} | {th}..{TH} | {se_}..{SE} "
              f"| {'PASS' if ok else 'FAIL'} |")

    print("\nThe same slopes with the open file descriptors held constant (memory fitted on time and fds "
          "together; not the criterion, an explanation of it: what time alone adds, and what each open fd holds):\n")
    print("| process | anon RSS %/day | heap %/day | live heap %/day | anon KiB per fd | live KiB per fd |")
    print("|---|---|---|---|---|---|")
    for comp in ("soakd", "target"):
        after = [r for r in rows if r["component"] == comp and int(r["elapsed_s"]) >= warm]
        h = {k: held(after, k) for k in ("anon_kib", "heap_kib", "live_kib")}
        cell = lambda k: f"{h[k][0]:+.2f} ± {h[k][1]:.2f}" if h[k] else "n/a"
        fd = lambda k: f"{h[k][2]:.1f}" if h[k] else "n/a"
        print(f"| {comp} | {cell('anon_kib')} | {cell('heap_kib')} | {cell('live_kib')} "
              f"| {fd('anon_kib')} | {fd('live_kib')} |")

    levels(rows, warm, int(a.window_minutes * 60))

    print("\nWhere the bytes are (soakd_memory_bytes by area, KiB; heap = the allocator's committed KiB):\n")
    print("| process | at | operations | heap | areas |")
    print("|---|---|---|---|---|")
    for comp in ("soakd", "target"):
        rs = [r for r in rows if r["component"] == comp]
        marks = []
        for goal in (1_000_000, 10_000_000, 50_000_000):
            hit = next((r for r in rs if int(r["ops"]) >= goal), None)
            if hit:
                marks.append((f"{goal // 1_000_000} M ops", hit))
        if rs:
            marks.append(("end", rs[-1]))
        for label, r in marks:
            print(f"| {comp} | {label} | {int(r['ops']):,} | {int(r['heap_kib']):,} | {r['areas_kib'] or 'n/a'} |")
    if a.db:
        database(a.db, warm)
    print(f"\nCriterion: the slope after the warm-up below {LIMIT:g} % per day for both processes "
          "(anonymous RSS and the allocator's committed heap; total RSS where a CSV has no anon column).")
    print("Overall:", "PASS" if all(verdicts) else "FAIL")


if __name__ == "__main__":
    main()
