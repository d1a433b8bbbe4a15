"""How much of the compressed index one query must scan as the index grows:
``python -m claspkit.bench.pq_scaling [--sizes 1000000,10000000,30000000] [--queries 200]``.

``bench.search`` times the real index, whose float32 vectors live on disk (1.6 KB per segment), so this
machine's disk caps it near 10M segments. A 100M projection turns on two other questions: which share of the
rows must be scanned for recall@10 0.96 after re-ranking (the index's target plus its calibration margin), and
how fast one query scans them on one core and on all. Both need only the PQ codes (56 bytes per segment, in
RAM): the rows (``synthetic_chunks``, the distribution of ``bench.search``) are generated a chunk at a time,
encoded and dropped, and the exact top-10 of the held-out queries is kept on the way. The recall after exact
re-ranking of C candidates is the share of the exact top-10 among them (re-ranking by exact score keeps every
one of those), so no vector is read back.

The needed share is fitted as a power of the index size (over the sizes from a tenth of the largest on) and
extrapolated, with the measured scan speed and multi-core speed-up, to 100M and 1B segments: arithmetic,
printed as such.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

from claspkit.bench.search import latency_ms, load_average, synthetic_chunks
from claspkit.search.index import (
    ANN_TARGET_RECALL, NPROBE_MAX, PQ_RECALL_MARGIN, PQ_TRAIN, TRAIN_PER_LIST, pq_candidates, pq_lists, recall_at_k,
    scanned_rows, search_exact, top_k, train_pq,
)

__all__ = ["CANDIDATES", "scan_scaling", "needed_share", "project", "main"]

CANDIDATES = (128, 256)     # re-ranked candidates measured (the index calibrates among 16..1024)
TARGET_MS = 100.0           # what a 100M-segment search should take (search only): the projection's yardstick


def _build(n: int, dim: int, queries: int, seed: int):
    """(index of n rows, held-out queries, their exact top-10 rows, seconds by stage)."""
    nlist = pq_lists(n)
    need = queries + min(n, max(TRAIN_PER_LIST * nlist, PQ_TRAIN))
    chunks = synthetic_chunks(n + queries, dim, seed)
    first, got = [], 0
    while got < need:
        first.append(next(chunks))
        got += len(first[-1])
    first = np.concatenate(first)
    q, first = first[:queries], first[queries:]
    t = time.perf_counter()
    ann = train_pq(first, seed, nlist=nlist)
    stages = {"train": time.perf_counter() - t, "add": 0.0, "exact": 0.0}
    best_rows = np.full((queries, 10), -1, np.int64)
    best_scores = np.full((queries, 10), -np.inf, np.float32)
    start = 0
    for rows in itertools.chain([first], chunks):     # a list would hold every row at once
        t = time.perf_counter()
        ann.add(np.ascontiguousarray(rows))
        stages["add"] += time.perf_counter() - t
        t = time.perf_counter()
        r, s = search_exact(rows, q, 10)
        best_rows, best_scores = top_k(np.hstack([best_scores, s]), np.hstack([best_rows, r + start]), 10)
        stages["exact"] += time.perf_counter() - t
        start += len(rows)
    return ann, q, best_rows, {k: round(v, 1) for k, v in stages.items()}


def _time_one(ann, q: np.ndarray, nprobe: int, threads: int) -> list[float]:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        pq_candidates(ann, q[:1], CANDIDATES[0], nprobe, parallel=threads > 1)           # warm-up
        out = []
        for i in range(len(q)):
            t = time.perf_counter()
            pq_candidates(ann, q[i:i + 1], CANDIDATES[0], nprobe, parallel=threads > 1)
            out.append(time.perf_counter() - t)
        return out
    finally:
        faiss.omp_set_num_threads(before)


def scan_scaling(n: int, dim: int = 384, queries: int = 200, timed: int = 50, seed: int = 0,
                 cores: int | None = None, target: float = ANN_TARGET_RECALL + PQ_RECALL_MARGIN) -> dict:
    """One index size: per nprobe (doubling, one step past recall@10 ``target``), the share of rows scanned
    (lists differ in size: a query's lists are often the big ones), the recall@10 after re-ranking each of
    ``CANDIDATES`` and the PQ search's median ms per query on 1 thread (``ms_1``) and on ``cores`` (``ms_all``),
    over ``timed`` queries one at a time."""
    import faiss

    cores = cores or os.cpu_count() or 1
    t = time.perf_counter()
    ann, q, exact, stages = _build(n, dim, queries, seed)
    build_s = time.perf_counter() - t
    ivf = faiss.extract_index_ivf(ann)
    grid, reached = [], False
    for nprobe in sorted({min(ivf.nlist, 2 ** i) for i in range(int(np.log2(NPROBE_MAX)) + 1)}):
        rows = pq_candidates(ann, q, max(CANDIDATES), nprobe)
        one, many = _time_one(ann, q[:timed], nprobe, 1), _time_one(ann, q[:timed], nprobe, cores)
        grid.append({"nprobe": nprobe, "share": float(scanned_rows(ann, q, nprobe).mean() / n),
                     **{f"recall@{c}": recall_at_k(rows[:, :c], exact) for c in CANDIDATES},
                     "ms_1": latency_ms(one)[0], "ms_all": latency_ms(many)[0]})
        if reached:
            break
        reached = grid[-1][f"recall@{CANDIDATES[0]}"] >= target
    return {"segments": n, "dim": dim, "nlist": int(ivf.nlist), "code_bytes": int(ivf.code_size),
            "queries": queries, "timed": timed, "cores": cores, "build_s": round(build_s, 1), "stages_s": stages,
            "grid": grid}


def needed_share(row: dict, target: float, candidates: int = CANDIDATES[0]) -> dict | None:
    """Where recall@10 (``candidates`` re-ranked) crosses ``target``: the share of rows scanned and the 1-thread
    and all-core ms, interpolated linearly in log(nprobe) between the two grid points around it."""
    key, grid = f"recall@{candidates}", row["grid"]
    for lo, hi in zip([None, *grid], grid):
        if hi[key] < target:
            continue
        if lo is None or hi[key] == lo[key]:
            w, lo = 1.0, hi
        else:
            w = (target - lo[key]) / (hi[key] - lo[key])

        def mix(k):
            return float(np.exp((1 - w) * np.log(lo[k]) + w * np.log(hi[k])))
        return {"share": mix("share"), "ms_1": mix("ms_1"), "ms_all": mix("ms_all"), "nprobe": mix("nprobe")}
    return None


def project(rows: list[dict], target: float, sizes=(100_000_000, 1_000_000_000),
            candidates: int = CANDIDATES[0]) -> dict | None:
    """A power law share = a n^b fitted to the needed shares measured from a tenth of the largest size on (the
    trend where it matters, not where small indexes need little), and at each of ``sizes``: share, bytes of
    codes per query, ms on one core at the largest measurement's scan speed, and the cores (at its measured
    parallel efficiency) for ``TARGET_MS``. None with fewer than two such sizes reaching the target."""
    largest = max((r["segments"] for r in rows), default=0)
    pts = [(r, needed_share(r, target, candidates)) for r in rows if r["segments"] * 10 >= largest]
    pts = [(r, s) for r, s in pts if s is not None]
    if len(pts) < 2:
        return None
    x = np.log([r["segments"] for r, _ in pts])
    y = np.log([s["share"] for _, s in pts])
    b, a = np.polyfit(x, y, 1)
    big, s = max(pts, key=lambda p: p[0]["segments"])
    ns_per_byte = s["ms_1"] * 1e6 / (s["share"] * big["segments"] * big["code_bytes"])
    efficiency = s["ms_1"] / s["ms_all"] / big["cores"]
    out = {"candidates": candidates, "exponent": float(b), "fitted_on": [r["segments"] for r, _ in pts],
           "ns_per_byte": float(ns_per_byte), "efficiency": float(efficiency), "from_cores": big["cores"], "sizes": []}
    for n in sizes:
        share = min(1.0, float(np.exp(a + b * np.log(n))))
        scan_bytes = share * n * big["code_bytes"]
        ms_1 = scan_bytes * ns_per_byte * 1e-6
        out["sizes"].append({"segments": n, "share": share, "scan_gb": scan_bytes / 1e9, "ms_1": ms_1,
                             "cores_for_target": int(np.ceil(ms_1 / TARGET_MS / efficiency))})
    return out


def _fmt(rows: list[dict], target: float) -> str:
    lines = [f"{'segments':>12} {'lists':>7} {'nprobe':>7} {'share':>7} "
             + " ".join(f"{'R@10 C=' + str(c):>11}" for c in CANDIDATES) + f" {'ms 1 core':>10} {'ms all':>8}"]
    for r in rows:
        for g in r["grid"]:
            lines.append(f"{r['segments']:>12,} {r['nlist']:>7,} {g['nprobe']:>7,} {g['share']:>7.3f} "
                         + " ".join(f"{g[f'recall@{c}']:>11.3f}" for c in CANDIDATES)
                         + f" {g['ms_1']:>10.1f} {g['ms_all']:>8.1f}")
        for c in CANDIDATES:
            s = needed_share(r, target, c)
            lines.append(f"{'':>12} needed for recall@10 {target:.2f} ({c} re-ranked): "
                         + (f"{s['share']:.3f} of the rows, {s['ms_1']:.1f} ms on 1 core, {s['ms_all']:.1f} ms on "
                            f"{r['cores']}" if s else "not reached"))
        lines.append(f"{'':>12} built in {r['build_s']:.0f} s {r['stages_s']}")
    return "\n".join(lines)


def _fmt_projection(p: dict | None, target: float) -> str:
    if p is None:
        return "projection: needs the target reached at two sizes or more"
    fitted = ", ".join(f"{n:,}" for n in p["fitted_on"])
    lines = [f"projection (arithmetic): needed share ~ n^{p['exponent']:.2f} (fitted at {fitted}); scan "
             f"{p['ns_per_byte']:.2f} ns per byte of codes on 1 core, {p['efficiency']:.0%} parallel efficiency on "
             f"{p['from_cores']} cores (from the largest size), recall@10 {target:.2f} with {p['candidates']} "
             "re-ranked, search only:"]
    for s in p["sizes"]:
        lines.append(f"  {s['segments']:>13,} segments: share {s['share']:.3f}, {s['scan_gb']:.2f} GB of codes per "
                     f"query, {s['ms_1']:,.0f} ms on 1 core; {s['cores_for_target']} cores for {TARGET_MS:.0f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m claspkit.bench.pq_scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000000,10000000", help="comma-separated index sizes (default 1M,10M; "
                   "30M needs ~2 GB of RAM and ~45 min on 2 cores)")
    p.add_argument("--queries", type=int, default=200, help="held-out queries for the recall (default 200)")
    p.add_argument("--timed", type=int, default=50, help="of which timed one at a time (default 50)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON (after every size)")
    args = p.parse_args(argv)
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    except ValueError:
        p.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 10_000:
        p.error("every size must be at least 10000")
    if not 1 <= args.timed <= args.queries:
        p.error("--timed must be between 1 and --queries")
    target = ANN_TARGET_RECALL + PQ_RECALL_MARGIN
    print(f"claspkit PQ scan scaling; load average {load_average()} on {os.cpu_count()} CPUs", flush=True)
    rows = []
    for n in sizes:
        rows.append(scan_scaling(n, args.dim, args.queries, args.timed, target=target))
        print(_fmt(rows[-1:], target) + f"\n  (load average {load_average()})", flush=True)
        if args.json:
            from claspkit.paths import atomic_write_text

            atomic_write_text(args.json, json.dumps({"target": target, "rows": rows, "projection": [
                project(rows, target, candidates=c) for c in CANDIDATES]}, indent=1, default=float))
    print("\n" + _fmt(rows, target))
    for c in CANDIDATES:
        print(_fmt_projection(project(rows, target, candidates=c), target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
