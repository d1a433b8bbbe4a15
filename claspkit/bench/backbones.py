"""Throughput and peak memory of every offline backbone: ``python -m claspkit.bench.backbones --preset tiny``.

A benchmark, not a timed test: it tells a user what a preset costs on *their* machine. Each backbone
runs in its own fresh process so one model's memory never inflates another's figure; the child's
``ru_maxrss`` is its peak resident memory, and the same child stopped before creating the model gives
the bare-import baseline. The feature cache is bypassed (``cache=False``) so the figures are compute:
audio loading + resampling + encoding, after one warm-up batch; model loading is timed separately.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from claspkit.errors import ClaspkitError

__all__ = ["OFFLINE", "FALLBACK_WAV_DIRS", "bench_items", "run", "main"]

# NAME@RUNTIME: the same backbone with ``runtime=RUNTIME`` (the image CNN in ONNX Runtime)
OFFLINE = [("speech", "whisper-tiny.en"), ("speech", "whisper-base"), ("image", "efficientnet-lite0"),
           ("image", "efficientnet-lite0@onnx"), ("text", "e5-small-multilingual"), ("text", "muse-multilingual"),
           ("text", "minilm-en")]
FALLBACK_WAV_DIRS = [Path("/usr/share/sounds/alsa")]


def _peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: robust to other load on the machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def bench_items(preset: str, n: int) -> tuple[list[str], list[str], str]:
    """Up to ``n`` audio paths and texts from the preset's corpus, or stand-ins (said in the note)."""
    from claspkit.config import load_params
    from claspkit.paths import data_dir, display_path

    P = load_params(preset)
    try:
        from claspkit.data.corpus import audio_path, load_manifest

        m = load_manifest(P)
        m = m.sample(min(n, len(m)), random_state=P.seed).sort_values("id")  # all categories and voices
        if len(m):
            return ([str(audio_path(p)) for p in m["path"]], list(m["text"]),
                    f"{len(m)} rows of the {preset} corpus (seeded sample)")
        reason = "its manifest is empty"
    except (ImportError, ClaspkitError, FileNotFoundError) as e:
        reason = str(e).split(";")[0]
    wavs = sorted(data_dir().rglob("*.wav"))[:n]
    where = display_path(data_dir())
    if not wavs:
        for d in FALLBACK_WAV_DIRS:
            wavs = sorted(d.glob("*.wav"))[:n]
            where = str(d)
            if wavs:
                break
    if not wavs:
        raise ClaspkitError(f"the {preset} corpus is not built ({reason}) and no .wav files were found "
                            "to stand in; run notebook 01 (or `make data`) first")
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen of Python
        import this
    zen = "".join(this.d.get(c, c) for c in this.s).splitlines()[2:]  # English lines shipped with Python
    texts = [zen[i % len(zen)] for i in range(n)]
    note = (f"the {preset} corpus is NOT built ({reason}): using {len(wavs)} .wav files from {where} "
            f"and {n} lines of the Zen of Python instead; build the corpus for representative figures")
    return [str(w) for w in wavs], texts, note


def _worker(role: str, name: str, items_file: str, batch_size: int, baseline: bool) -> dict:
    """Runs in the child: everything the measurement needs, then (unless baseline) the backbone."""
    from claspkit.data import audio  # noqa: F401 (the baseline imports the same modules)
    from claspkit.encoders import backbones, features  # noqa: F401

    items = json.loads(Path(items_file).read_text())
    if baseline:
        return {"peak_rss_mib": _peak_rss_mib()}
    audio_role = role != "text"
    data = items["paths" if audio_role else "texts"]
    t0 = time.perf_counter()
    name, _, runtime = name.partition("@")
    enc = backbones.create_backbone(role, name, **({"runtime": runtime} if runtime else {}))
    model_s = time.perf_counter() - t0
    extract = features.extract_audio if audio_role else features.extract_text
    extract(enc, data[:batch_size], cache=False, batch_size=batch_size, progress=False)  # warm-up
    cpu0 = _cpu_seconds()
    _, st = extract(enc, data, cache=False, batch_size=batch_size, progress=False, return_stats=True)
    cpu_s = _cpu_seconds() - cpu0
    return {"cpu_s_per_item": cpu_s / max(st.n_computed, 1), "dim": st.dim, "n": st.n_computed, "model_s": model_s,
            "load_s": st.load_seconds,
            "encode_s": st.encode_seconds, "items_per_s": st.items_per_s,
            "rtf": st.rtf if audio_role else None, "audio_s": st.audio_seconds,
            "peak_rss_mib": _peak_rss_mib()}


def _run_child(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "claspkit.bench.backbones", "--worker", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(x, spec):
    return "n/a" if x is None or x != x else format(x, spec)


def run(preset: str = "tiny", n: int = 64, batch_size: int = 16, only: list[str] | None = None,
        timeout: float = 1800.0) -> list[dict]:
    """Benchmark each offline backbone in a fresh process; print and return one row per backbone."""
    paths, texts, note = bench_items(preset, n)
    chosen = [(r, b) for r, b in OFFLINE if not only or b in only]
    with tempfile.TemporaryDirectory(prefix="claspkit-bench-") as tmp:
        items_file = Path(tmp) / "items.json"
        items_file.write_text(json.dumps({"paths": paths, "texts": texts}))
        base = _run_child(["baseline", "-", str(items_file), str(batch_size), "--baseline"], timeout)
        if "error" in base:
            raise ClaspkitError(f"the baseline process failed ({base['error']}); "
                                "check that `python -c 'import claspkit.encoders.backbones'` works")
        rows = []
        for role, name in chosen:
            print(f"... {name} ({role})", file=sys.stderr, flush=True)
            r = _run_child([role, name, str(items_file), str(batch_size)], timeout)
            rows.append({"backbone": name, "role": role, **r})
    base_mib = base["peak_rss_mib"]
    cpu = f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
    loads = os.getloadavg()
    load = " / ".join(f"{x:.1f}" for x in loads)
    busy = (f"\n**The machine was busy** (load average {max(loads):.1f} on {os.cpu_count()} cores): wall-clock "
            "figures (items/s, RTF) are pessimistic; CPU s/item is the figure that survives contention.\n"
            if max(loads) > (os.cpu_count() or 1) else "")
    print(f"\n## Offline backbones on {note}\n")
    print(f"Machine: {cpu}, Python {platform.python_version()}, load average {load} at the end; "
          f"batch size {batch_size}; feature cache "
          "bypassed (figures are compute: audio load + resample + encode, after one warm-up batch).")
    print(f"Peak memory is the child process's ru_maxrss; the baseline (Python + claspkit.encoders.backbones, "
          f".audio, .features imported, no model) is {base_mib:.0f} MiB. RTF = compute time / audio "
          "duration (below 1 is faster than real time); CPU s/item counts all threads.\n" + busy)
    print("| backbone | role | dim | items | model load (s) | items/s | RTF | CPU s/item | peak RSS (MiB) "
          "| over baseline (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['backbone']} | {r['role']} | failed: {r['error']} ||||||||")
            continue
        print(f"| {r['backbone']} | {r['role']} | {r['dim']} | {r['n']} | {r['model_s']:.1f} | "
              f"{r['items_per_s']:.1f} | {_fmt(r['rtf'], '.3f')} | {r['cpu_s_per_item']:.3f} | "
              f"{r['peak_rss_mib']:.0f} | "
              f"{r['peak_rss_mib'] - base_mib:.0f} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m claspkit.bench.backbones", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", help="whose corpus to read items from (default: tiny)")
    ap.add_argument("--n", type=int, default=64, help="items per backbone (default: 64)")
    ap.add_argument("--batch-size", type=int, default=16, help="encoder batch size (default: 16)")
    ap.add_argument("--only", nargs="+", metavar="BACKBONE", help="benchmark only these backbones")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per backbone")
    ap.add_argument("--worker", nargs=4, metavar=("ROLE", "NAME", "ITEMS", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        role, name, items, batch = a.worker
        print(json.dumps(_worker(role, name, items, int(batch), a.baseline)))
        return 0
    unknown = sorted(set(a.only or []) - {b for _, b in OFFLINE})
    if unknown:
        from claspkit.errors import choices_hint

        ap.error(f"--only: {choices_hint(unknown[0], [b for _, b in OFFLINE])}")
    try:
        run(a.preset, a.n, a.batch_size, a.only, a.timeout)
    except ClaspkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
