"""Search benchmark: ``python -m claspkit.bench.search [--sizes 10000,100000,1000000] [--quick]``.

Prints three things a user of ``claspkit index`` / ``claspkit search`` wants to know on *their* machine:

1. **Query latency** (text encoding + search, median and p95 over ``--queries`` queries) at each index
   size, for the exact numpy search, FAISS ``IndexFlatIP`` (also exact) and the IVF-Flat index that
   ``claspkit.search.index`` builds from ``ANN_MIN_SEGMENTS`` segments on, with its recall@10 against the exact
   search. The index vectors are synthetic: unit vectors in clusters of about 200 (like the segments of
   one talk on one topic), ``--dim`` wide (384, the e5-small text space). Recall is measured on held-out
   queries: rows of the same synthetic distribution that are not indexed (``held_out``), as ANN benchmarks
   hold out base vectors; perturbed probes (index vectors mixed with noise to cosine 0.7) are kept as a
   stress figure. Neither is the index's own calibration set (leave-one-out stored rows). The text
   encoder is the real one (e5-small-multilingual) on real queries in five languages.
2. **Indexing throughput** as a multiple of real time, with whisper-tiny.en + efficientnet-lite0 and an
   (untrained: speed does not depend on the weights) concat fusion head, on espeak-ng lectures; also a
   speech-only head, and the time split by stage, so the dominant part is visible; the image CNN is
   timed in both runtimes (ONNX Runtime, what ``claspkit index`` uses, and torch).
3. **Index memory per segment** (bytes on disk; the vectors are memory-mapped, so also resident bytes
   once touched).

All figures depend on the machine and on what else runs on it: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from claspkit.bench.machine import load_average
from claspkit.errors import ClaspkitError
from claspkit.search.index import (
    ANN_MIN_SEGMENTS, PQ_MIN_SEGMENTS, SEGMENT_DTYPE, build_ann, build_pq, probe_queries, recall_at_k, search_ann,
    search_exact, search_pq, pq_lists,
)

__all__ = [
    "QUERIES", "LECTURE", "load_average", "latency_ms", "synthetic_vectors", "synthetic_chunks", "encode_times",
    "bench_queries",
    "held_out", "synthesize_lectures", "bench_indexing", "evict_from_cache", "bench_compressed", "projection", "main",
]

QUERIES = [
    "the history of the steam engine", "how doctors measure body temperature", "the price of bread went up",
    "who won the election last year", "rivers were the first roads of trade", "a storm is coming tonight",
    "the committee will vote on the budget", "children learn languages quickly", "the train was late again",
    "microscopes opened a new field of study",
    "l'histoire de la machine à vapeur", "le prix du pain a augmenté", "les enfants apprennent vite les langues",
    "une tempête arrive ce soir", "le train était encore en retard",
    "die Geschichte der Dampfmaschine", "der Preis für Brot ist gestiegen", "ein Sturm zieht heute Nacht auf",
    "Kinder lernen Sprachen schnell", "der Zug hatte wieder Verspätung",
    "蒸汽机的历史", "面包的价格上涨了", "今晚会有暴风雨", "孩子们学语言很快", "火车又晚点了",
    "تاریخ ماشین بخار", "قیمت نان بالا رفت", "امشب طوفان می‌آید", "کودکان زبان را سریع یاد می‌گیرند",
    "قطار دوباره دیر کرد",
]

LECTURE = (
    "The history of science is full of surprises. In the seventeenth century, many people believed that the "
    "heart was a kind of furnace. Later, doctors learned that it is a pump. Today we will look at how "
    "measurement changed medicine. Thermometers were once rare and expensive. Now almost every family owns one. "
    "The same story holds for clocks, scales and microscopes. Each new tool opened a new field of study. "
    "Students often ask which discovery mattered most. There is no single answer, but the idea of careful "
    "measurement comes close. Let us begin with the thermometer, and then move on to the microscope. "
    "After that we will discuss the clock, and finally the scale. Rivers were the first roads of trade, and "
    "the price of bread followed the harvest. A storm could ruin a town's supply in a single night.")
SPEECH, IMAGE, TEXT = "whisper-tiny.en", "efficientnet-lite0", "e5-small-multilingual"


def synthetic_vectors(n: int, dim: int, seed: int = 0, cluster: int = 200, chunk: int = 65536,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Anisotropic clustered unit vectors: 0.7 shared direction + 0.5 cluster centre + 0.6 noise.

    Clusters of about ``cluster`` rows; unrelated rows have cosine ~0.45 on average (text-embedding
    spaces are anisotropic like this), rows of one cluster ~0.7. Harder for IVF than isotropic clusters.
    ``out`` (e.g. a memory-mapped file) receives the rows chunk by chunk, so 10M rows need no 15 GB of RAM.
    """
    out = np.empty((n, dim), np.float32) if out is None else out
    if out.shape != (n, dim) or out.dtype != np.float32:
        raise ClaspkitError(f"synthetic_vectors: out must be float32 of shape {(n, dim)}, got {out.dtype} {out.shape}")
    a = 0
    for rows in synthetic_chunks(n, dim, seed, cluster, chunk):
        out[a:a + len(rows)] = rows
        a += len(rows)
    return out


def synthetic_chunks(n: int, dim: int, seed: int = 0, cluster: int = 200, chunk: int = 65536):
    """``synthetic_vectors``' rows, ``chunk`` at a time, for indexes bigger than memory or disk."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    centers = rng.standard_normal((max(1, n // cluster), dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        noise = rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim, dtype=np.float32)
        rows = 0.7 * mean + 0.5 * centers[rng.integers(0, len(centers), m)] + 0.6 * noise
        yield rows / np.linalg.norm(rows, axis=1, keepdims=True)


def latency_ms(seconds: list[float]) -> tuple[float, float]:
    """(median, p95) in ms."""
    ms = np.asarray(seconds) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 95))


def _text_encoder():
    try:
        from claspkit.encoders.backbones import create_backbone

        return create_backbone("text", TEXT), None
    except (ClaspkitError, ImportError, OSError) as e:
        return None, f"text encoder {TEXT} unavailable ({e}); latencies are search only"


def encode_times(encoder, texts: list[str]) -> list[float]:
    """Seconds to embed each query alone (after a warm-up); zeros without an encoder."""
    if encoder is None:
        return [0.0] * len(texts)
    encoder.encode(texts[:2])
    out = []
    for text in texts:
        t = time.perf_counter()
        encoder.encode([text])
        out.append(time.perf_counter() - t)
    return out


def held_out(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the first ``n`` rows to index, the rest as queries): queries drawn from the indexed distribution, as
    ANN benchmarks (SIFT1M, Deep1B) hold out base vectors. Their neighbours are rows of their own cluster;
    ``probe_queries``' perturbed probes stay as a stress figure (``perturbed_recall@10``), whose neighbours at
    10M rows are mostly chance alignments (see ``claspkit.search.index.calibration_probes``)."""
    return x[:n], np.asarray(x[n:], np.float32)


def bench_queries(sizes: list[int], dim: int, enc_s: list[float]) -> list[dict]:
    """Rows: size, method, search and total (encode + search) median/p95 ms, recall@10, build s, bytes/segment.

    ``enc_s`` are the per-query text-encoding times; query i's total is its encoding time plus its search time.
    """
    import faiss

    n_queries = len(enc_s)
    rows = []
    for n in sizes:
        t = time.perf_counter()
        x, probes = held_out(synthetic_vectors(n + n_queries, dim), n)
        gen_s = time.perf_counter() - t
        exact, _ = search_exact(x, probes, 10)

        def run(search_one):
            search_t = []
            for q in probes:
                t1 = time.perf_counter()
                search_one(q[None])
                search_t.append(time.perf_counter() - t1)
            return latency_ms(search_t), latency_ms([a + b for a, b in zip(enc_s, search_t)])

        table = 4 * 3
        base = {"segments": n, "dim": dim, "synth_s": round(gen_s, 1)}
        (s_med, s_p95), (t_med, t_p95) = run(lambda q: search_exact(x, q, 10))
        rows.append({**base, "method": "numpy exact", "search_ms": (s_med, s_p95), "total_ms": (t_med, t_p95),
                     "recall@10": 1.0, "build_s": 0.0, "bytes_per_segment": 4 * dim + table})

        t = time.perf_counter()
        flat = faiss.IndexFlatIP(dim)
        flat.add(x)
        build = time.perf_counter() - t
        (s_med, s_p95), (t_med, t_p95) = run(lambda q: flat.search(q, 10))
        got = flat.search(probes, 10)[1]
        rows.append({**base, "method": "faiss flat", "search_ms": (s_med, s_p95), "total_ms": (t_med, t_p95),
                     "recall@10": recall_at_k(got, exact), "build_s": round(build, 1),
                     "bytes_per_segment": 4 * dim + table})
        flat = None            # free it before the next index (the lambdas above are done with it)

        t = time.perf_counter()
        ivf, info = build_ann(x)
        build = time.perf_counter() - t
        (s_med, s_p95), (t_med, t_p95) = run(lambda q: search_ann(ivf, q, 10, info["nprobe"]))
        got, _ = search_ann(ivf, probes, 10, info["nprobe"])
        stress = probe_queries(x, n_queries, seed=1234)
        stress_got, _ = search_ann(ivf, stress, 10, info["nprobe"])
        ivf_bytes = len(faiss.serialize_index(ivf))
        rows.append({**base, "method": f"faiss ivf (nlist {info['nlist']}, nprobe {info['nprobe']})",
                     "search_ms": (s_med, s_p95), "total_ms": (t_med, t_p95), "recall@10": recall_at_k(got, exact),
                     "calibration_recall@10": info["recall_at_10"], "build_s": round(build, 1),
                     "perturbed_recall@10": recall_at_k(stress_got, search_exact(x, stress, 10)[0]),
                     "bytes_per_segment": round(4 * dim + table + ivf_bytes / n, 1)})
        ivf = x = None
        used = "faiss ivf" if n >= ANN_MIN_SEGMENTS else "numpy exact"
        for r in rows[-3:]:
            r["used_by_claspkit"] = r["method"].startswith(used)
    return rows


# ---------------------------------------------------------------------- compressed index (IVF-PQ + re-ranking)
def evict_from_cache(path: Path) -> None:
    """Drop a file's pages from the page cache (POSIX_FADV_DONTNEED), to time reads as from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _time_queries(search_one, probes: np.ndarray, before=None) -> list[float]:
    out = []
    for q in probes:
        if before is not None:
            before()
        t = time.perf_counter()
        search_one(q[None])
        out.append(time.perf_counter() - t)
    return out


def bench_compressed(n: int, dim: int, enc_s: list[float], work: Path) -> dict:
    """IVF-PQ with exact re-ranking at ``n`` synthetic segments whose vectors live in a memory-mapped file.

    The vectors are written chunk by chunk to ``work/vectors.npy`` (deleted at the end); recall@10 after
    re-ranking is measured on held-out queries (``held_out``; perturbed probes as a stress figure); latency is
    timed warm (vectors in the page cache)
    and cold (the vector file evicted from the cache before each query, so every candidate is a disk read).
    """
    import faiss

    path = work / "vectors.npy"
    try:
        t = time.perf_counter()
        m = len(enc_s)
        x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n + m, dim))
        synthetic_vectors(n + m, dim, out=x)
        x.flush()
        x, probes = held_out(np.load(path, mmap_mode="r"), n)
        synth_s = time.perf_counter() - t
        t = time.perf_counter()
        exact, _ = search_exact(x, probes, 10)
        exact_s = (time.perf_counter() - t) / len(probes)
        t = time.perf_counter()
        stages: dict = {}
        trace: list = []
        ann, info = build_pq(x, timings=stages, trace=trace)
        build_s = time.perf_counter() - t
        nprobe, cand = info["nprobe"], info["candidates"]
        got, _ = search_pq(ann, x, probes, 10, nprobe, cand)

        def one(q):
            return search_pq(ann, x, q, 10, nprobe, cand)
        warm = _time_queries(one, probes)
        cold = _time_queries(one, probes, before=lambda: evict_from_cache(path))
        scan = _time_queries(lambda q: search_pq(ann, x, q, 10, nprobe, 0), probes)   # PQ search, k rows read
        stress = probe_queries(x, m, seed=1234)
        stress_got, _ = search_pq(ann, x, stress, 10, nprobe, cand)
        stress_recall = recall_at_k(stress_got, search_exact(x, stress, 10)[0])
        ann_bytes = len(faiss.serialize_index(ann))
        ivf = faiss.extract_index_ivf(ann)
        table = SEGMENT_DTYPE.itemsize
        return {
            "segments": n, "dim": dim, "synth_s": round(synth_s, 1), "build_s": round(build_s, 1), "stages_s": stages,
            "exact_ms_per_query": round(exact_s * 1e3, 1), **{k: info[k] for k in (
                "nlist", "code_bytes", "nprobe", "candidates", "recall_at_10", "trained_on")},
            "recall@10": recall_at_k(got, exact), "perturbed_recall@10": stress_recall,
            "warm_ms": latency_ms(warm), "cold_ms": latency_ms(cold),
            "pq_only_ms": latency_ms(scan), "total_warm_ms": latency_ms([a + b for a, b in zip(enc_s, warm)]),
            "total_cold_ms": latency_ms([a + b for a, b in zip(enc_s, cold)]),
            "ram_bytes_per_segment": round(ann_bytes / n + table, 1),
            "disk_bytes_per_segment": round(4 * dim + table + ann_bytes / n, 1),
            "calibration": trace, "per_row_bytes": int(ivf.code_size + 8),
            "per_list_bytes": round((ann_bytes - n * (ivf.code_size + 8)) / ivf.nlist, 1),
        }
    finally:
        x = None
        path.unlink(missing_ok=True)


def projection(row: dict, n: int) -> dict:
    """RAM and disk at ``n`` segments, by arithmetic from one measured row: per-row bytes (codes, ids, segment
    table, float32 vector) times n, plus the measured per-list bytes (centroid, list header) times ``pq_lists(n)``."""
    nlist = pq_lists(n)
    table = SEGMENT_DTYPE.itemsize
    ram = n * (row["per_row_bytes"] + table) + nlist * row["per_list_bytes"]
    return {"segments": n, "nlist": nlist, "ram_gb": ram / 1e9, "disk_gb": (ram + n * 4 * row["dim"]) / 1e9}


# ---------------------------------------------------------------------- indexing throughput
def synthesize_lectures(folder: Path, minutes: float) -> float:
    """espeak-ng 'lectures' (the LECTURE paragraph, 4 voices/speeds) until ``minutes`` of audio; returns seconds."""
    from claspkit.data.tts import get_synthesizer

    syn = get_synthesizer("espeak")  # the canonical pip build: the same lectures on every machine
    folder.mkdir(parents=True, exist_ok=True)
    total, i = 0.0, 0
    voices = ["en-us?rate=160", "en-gb?rate=150", "en-us?rate=175", "en-gb-scotland?rate=165"]
    while total < minutes * 60:
        total += syn.synthesize(LECTURE, voices[i % len(voices)], folder / f"lecture{i:02d}.wav")
        i += 1
    return total


def bench_indexing(minutes: float, work: Path, repeats: int = 3) -> dict:
    import torch

    from claspkit.encoders.backbones import create_backbone, list_backbones
    from claspkit.model.fusion import build_fusion
    from claspkit.search.index import load_index
    from claspkit.search.query import build_index, cut_segments
    from claspkit.model.checkpoint import save_checkpoint

    audio_s = synthesize_lectures(work / "lib", minutes)
    dims = {(r["role"], r["name"]): r["dim"] for r in list_backbones()}
    out = {"audio_s": round(audio_s, 1), "files": len(list((work / "lib").glob("*.wav"))),
           "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    for branches in ("combined", "speech"):
        torch.manual_seed(0)
        cfg = {"fusion": "concat", "branches": branches, "speech_dim": dims[("speech", SPEECH)],
               "image_dim": dims[("image", IMAGE)], "out_dim": dims[("text", TEXT)], "dropout_scale": 1.0}
        ckpt = save_checkpoint(work / f"ckpt-{branches}", build_fusion(cfg).eval(),
                               {"speech_backbone": SPEECH, "image_backbone": IMAGE, "text_backbone": TEXT})
        runs = [build_index(work / "lib", ckpt, work / f"index-{branches}", progress=False, rebuild=True)
                for _ in range(repeats)]                     # a few seconds each: take the median run
        s = sorted(runs, key=lambda r: r.rtf)[len(runs) // 2]
        idx = load_index(work / f"index-{branches}")
        out[branches] = {"rtf": round(s.rtf, 1), "rtf_runs": [round(r.rtf, 1) for r in runs],
                         "segments": s.segments, "timings": s.timings,
                         "bytes_per_segment": round(idx.nbytes()["per_segment"], 1),
                         "mean_segment_s": round(float(np.mean(idx.end_s - idx.start_s)), 2)}
    # split the image branch into drawing the spectrograms and running the CNN
    from claspkit.data.audio import load_audio

    idx = load_index(work / "index-combined")
    waves = []
    for rel, f in idx.files.items():
        audio = load_audio(idx.audio_root / rel)
        rows = slice(f["first_row"], f["first_row"] + f["n_segments"])
        waves += cut_segments(audio, zip(idx.start_s[rows], idx.end_s[rows]))
    split = {}
    for runtime in ("onnx", "torch"):
        enc = create_backbone("image", IMAGE, runtime=runtime)
        enc.encode(waves[:2])
        t = time.perf_counter()
        enc.images(waves)
        split["spectrograms"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        enc.encode(waves)
        split[f"cnn_{runtime}"] = round(time.perf_counter() - t - split["spectrograms"], 2)
    out["image_split_s"] = split
    return out


# ---------------------------------------------------------------------- report
def _fmt_q(rows: list[dict], encoder_note: str | None) -> str:
    head = f"{'segments':>9}  {'method':<34} {'search med/p95 ms':>17}  {'total med/p95 ms':>16}  " \
           f"{'recall@10':>9}  {'build s':>7}  {'bytes/seg':>9}"
    lines = [head]
    for r in rows:
        mark = " *" if r.get("used_by_claspkit") else ""
        lines.append(f"{r['segments']:>9,}  {r['method'] + mark:<34} "
                     f"{r['search_ms'][0]:>8.2f}/{r['search_ms'][1]:<8.2f} "
                     f"{r['total_ms'][0]:>7.2f}/{r['total_ms'][1]:<8.2f} {r['recall@10']:>9.3f}  "
                     f"{r['build_s']:>7.1f}  {r['bytes_per_segment']:>9,.0f}")
    for r in rows:
        if "perturbed_recall@10" in r:
            lines.append(f"  at {r['segments']:,}, faiss ivf: calibration recall@10 {r['calibration_recall@10']:.3f} "
                         f"(leave-one-out), {r['perturbed_recall@10']:.3f} on perturbed probes (stress)")
    lines.append("* = what claspkit.search.index uses at that size (exact below "
                 f"{ANN_MIN_SEGMENTS:,} segments, IVF from there on)")
    if encoder_note:
        lines.append(encoder_note)
    return "\n".join(lines)


def _fmt_c(rows: list[dict], encoder_note: str | None) -> str:
    lines = [f"{'segments':>11}  {'nlist':>6} {'nprobe':>6} {'rerank':>6}  {'recall@10':>9}  "
             f"{'warm med/p95 ms':>15}  {'cold med/p95 ms':>15}  {'+encode warm/cold':>17}  {'build s':>7}  "
             f"{'RAM B/seg':>9}  {'disk B/seg':>10}"]
    for r in rows:
        lines.append(f"{r['segments']:>11,}  {r['nlist']:>6} {r['nprobe']:>6} {r['candidates']:>6}  "
                     f"{r['recall@10']:>9.3f}  {r['warm_ms'][0]:>7.2f}/{r['warm_ms'][1]:<7.2f}  "
                     f"{r['cold_ms'][0]:>7.2f}/{r['cold_ms'][1]:<7.2f}  "
                     f"{r['total_warm_ms'][0]:>8.1f}/{r['total_cold_ms'][0]:<8.1f}  {r['build_s']:>7.1f}  "
                     f"{r['ram_bytes_per_segment']:>9,.0f}  {r['disk_bytes_per_segment']:>10,.0f}")
    for r in rows:
        lines.append(f"  at {r['segments']:,}: calibration recall@10 {r['recall_at_10']:.3f} (leave-one-out), "
                     f"{r['perturbed_recall@10']:.3f} on perturbed probes (stress); PQ search alone "
                     f"{r['pq_only_ms'][0]:.2f} ms median; exact scan {r['exact_ms_per_query']:.1f} ms per query "
                     f"(batched ground truth); {r['code_bytes']}-byte codes; synthesis {r['synth_s']:.0f} s; build "
                     + ", ".join(f"{k} {v:.0f} s" for k, v in r["stages_s"].items()))
    if rows:
        last = rows[-1]
        lines.append(f"PROJECTION (arithmetic from the {last['segments']:,}-segment row's bytes, not measured):")
        for n in (100_000_000, 1_000_000_000):
            p = projection(last, n)
            lines.append(f"  {n:>13,} segments: {p['ram_gb']:,.1f} GB in RAM (codes, ids, segment table, "
                         f"{p['nlist']:,} lists), {p['disk_gb']:,.0f} GB on disk")
    lines.append("cold = the vector file evicted from the page cache before each query (every re-ranked "
                 "candidate read from disk)")
    if encoder_note:
        lines.append(encoder_note)
    return "\n".join(lines)


def _fmt_i(r: dict) -> str:
    lines = [f"indexing {r['files']} espeak-ng lectures, {r['audio_s'] / 60:.1f} min of audio, "
             f"torch threads {r['torch_threads']} of {r['cpus']} CPUs:"]
    for branches, label in (("combined", f"{SPEECH} + {IMAGE} + concat head"),
                            ("speech", f"{SPEECH} + speech-only head")):
        b = r[branches]
        t = b["timings"]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in t.items() if k != "load")
        spread = "/".join(f"{x:.0f}" for x in b.get("rtf_runs", []))
        lines.append(f"  {label}: {b['rtf']:.1f}x real time (median of runs at {spread}x; "
                     f"{b['segments']} segments of {b['mean_segment_s']} s "
                     f"on average; seconds: {parts}; model load {t.get('load', 0):.1f} s once)")
    sp = r["image_split_s"]
    lines.append(f"  image branch split: spectrogram drawing {sp['spectrograms']:.2f} s, CNN {sp['cnn_onnx']:.2f} s in "
                 f"ONNX Runtime (what index uses) vs {sp['cnn_torch']:.2f} s in torch "
                 f"({sp['cnn_torch'] / max(sp['cnn_onnx'], 1e-9):.1f}x)")
    lines.append(f"index size on disk: {r['combined']['bytes_per_segment']:,.0f} bytes per segment for this small "
                 "index (vectors + segment table + manifest)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m claspkit.bench.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="comma-separated index sizes (default 10000,100000,1000000)")
    p.add_argument("--queries", type=int, default=None, help="queries per size (default 50; 20 with --quick)")
    p.add_argument("--dim", type=int, default=384, help="vector dim (default 384, the e5-small text space)")
    p.add_argument("--minutes", type=float, default=None, help="minutes of speech to index (default 4; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="10K and 100K only, fewer queries, 1 min of speech")
    p.add_argument("--pq-sizes", default=None, help="sizes for the compressed IVF-PQ index (default 1000000; "
                   "20000 with --quick; e.g. 1000000,10000000: 10M writes a 15 GB file to --work)")
    p.add_argument("--work", default=None, help="folder for the memory-mapped vectors (default the temp folder)")
    p.add_argument("--skip-exact", action="store_true", help="skip the exact / flat / IVF-Flat table")
    p.add_argument("--skip-indexing", action="store_true", help="query latency only")
    p.add_argument("--repeats", type=int, default=3, help="indexing runs per head; the median is reported (default 3)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    try:
        sizes = [int(s.replace("_", "")) for s in (args.sizes or ("10000,100000" if args.quick else
                                                                  "10000,100000,1000000")).split(",")]
    except ValueError:
        p.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    try:
        pq_sizes = [int(s.replace("_", "")) for s in (args.pq_sizes or ("20000" if args.quick else "1000000"))
                    .split(",") if s]
    except ValueError:
        p.error(f"--pq-sizes must be comma-separated integers, got {args.pq_sizes!r}")
    if min(sizes) < 100 or min(pq_sizes or [1000]) < 1000:
        p.error("every size must be at least 100 (1000 for --pq-sizes)")
    n_queries = args.queries or (20 if args.quick else 50)
    minutes = args.minutes or (1.0 if args.quick else 4.0)

    print(f"claspkit search benchmark; load average {load_average()} on {os.cpu_count()} CPUs", flush=True)
    encoder, note = _text_encoder()
    if encoder is not None and encoder.dim != args.dim:
        note = f"note: the index dim {args.dim} differs from the text encoder's {encoder.dim}"
    enc_s = encode_times(encoder, [QUERIES[i % len(QUERIES)] for i in range(n_queries)])
    if encoder is not None:
        med, p95 = latency_ms(enc_s)
        print(f"\ntext encoding ({TEXT}, one query at a time, 5 languages): median {med:.1f} ms, p95 {p95:.1f} ms")
    result = {"load_average": load_average(), "cpus": os.cpu_count(), "encode_ms": latency_ms(enc_s)}
    t0 = time.perf_counter()
    if not args.skip_exact:
        rows = bench_queries(sizes, args.dim, enc_s)
        result["queries"] = rows
        print(f"\nquery latency, {n_queries} queries per size, synthetic clustered unit vectors, dim {args.dim}:")
        print(_fmt_q(rows, note), flush=True)
    result["compressed"] = []
    work = Path(args.work or tempfile.gettempdir())
    for n in pq_sizes:
        print(f"\ncompressed index at {n:,} segments (load average {load_average()}) ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="claspkit-pq-", dir=work) as tmp:
            result["compressed"].append(bench_compressed(n, args.dim, enc_s, Path(tmp)))
        print(f"  done, load average {load_average()}", flush=True)
    if pq_sizes:
        print(f"\nIVF-PQ + exact re-ranking (what claspkit builds from {PQ_MIN_SEGMENTS:,} segments on), "
              f"{n_queries} held-out queries per size, dim {args.dim}:")
        print(_fmt_c(result["compressed"], note), flush=True)
    if not args.skip_indexing:
        with tempfile.TemporaryDirectory(prefix="claspkit-bench-") as tmp:
            try:
                result["indexing"] = bench_indexing(minutes, Path(tmp), max(1, args.repeats))
                print("\n" + _fmt_i(result["indexing"]))
            except ClaspkitError as e:
                print(f"\nindexing benchmark skipped: {e}")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\nload average at the end {load_average()}; benchmark took {result['seconds']:.0f} s")
    if args.json:
        from claspkit.paths import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
