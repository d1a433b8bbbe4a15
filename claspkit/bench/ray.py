"""Ray engine benchmark: ``python -m claspkit.bench.ray [--minutes 4] [--workers 1,2] [--repeats 1]``.

Indexes espeak-ng lectures (``claspkit.bench.search.LECTURE``, every file another voice or speed, so no
file is a copy the index would reuse) with whisper-tiny.en +
efficientnet-lite0 (ONNX Runtime) and an untrained concat head, with the local engine and with the Ray
engine at each number of workers (actors per backbone) on a local Ray instance of ``--cpus`` CPUs, and
prints audio seconds per wall second and the ratio to the local engine. Every run is timed end to end
(models loaded, Ray actors started, index committed), since that is what a user waits for; Ray itself is
started once before the runs, as a cluster would be already up. Each Ray index is also compared byte for
byte with the local one. Figures depend on what else runs on the machine: the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["synthesize_distinct", "index_files", "bench", "main"]


def synthesize_distinct(folder: Path, minutes: float) -> float:
    """Lectures until ``minutes`` of audio, each file in a voice/speed of its own; returns seconds."""
    from claspkit.bench.search import LECTURE
    from claspkit.data.tts import get_synthesizer

    syn = get_synthesizer("espeak")
    folder.mkdir(parents=True, exist_ok=True)
    voices = ["en-us", "en-gb", "en-gb-scotland", "en-029"]
    total, i = 0.0, 0
    while total < minutes * 60:
        voice = f"{voices[i % len(voices)]}?rate={150 + 7 * (i // len(voices))}"
        total += syn.synthesize(LECTURE, voice, folder / f"lecture{i:02d}.wav")
        i += 1
    return total


def index_files(folder: Path) -> dict:
    """An index folder's files and their bytes (the lock file aside)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


def _checkpoint(work: Path) -> Path:
    import torch

    from claspkit.bench.search import IMAGE, SPEECH, TEXT
    from claspkit.encoders.backbones import list_backbones
    from claspkit.model.fusion import build_fusion
    from claspkit.model.checkpoint import save_checkpoint

    dims = {(r["role"], r["name"]): r["dim"] for r in list_backbones()}
    torch.manual_seed(0)
    cfg = {"fusion": "concat", "branches": "combined", "speech_dim": dims[("speech", SPEECH)],
           "image_dim": dims[("image", IMAGE)], "out_dim": dims[("text", TEXT)], "dropout_scale": 1.0}
    return save_checkpoint(work / "ckpt", build_fusion(cfg).eval(),
                           {"speech_backbone": SPEECH, "image_backbone": IMAGE, "text_backbone": TEXT})


def _timed(lib: Path, ckpt: Path, out: Path, **kw) -> tuple[float, object]:
    from claspkit.search.query import build_index

    t = time.perf_counter()
    summary = build_index(lib, ckpt, out, progress=False, rebuild=True, **kw)
    return time.perf_counter() - t, summary


def bench(minutes: float, workers: list[int], cpus: int, repeats: int, work: Path) -> dict:
    """Local, then Ray at each worker count; the median of ``repeats`` end-to-end runs each."""
    from claspkit.encoders import engine

    lib = work / "lib"
    synthesize_distinct(lib, minutes)
    ckpt = _checkpoint(work)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    runs = [_timed(lib, ckpt, work / "local") for _ in range(repeats)]
    local_s = median([r[0] for r in runs])
    audio_s = runs[0][1].audio_seconds          # what was embedded (a copy of a file would be reused)
    if runs[0][1].files_reused:
        raise AssertionError("bench_ray: a lecture was a copy of another, so its audio was not embedded")
    out = {"audio_s": round(audio_s, 1), "files": len(list(lib.glob("*.wav"))), "segments": runs[0][1].segments,
           "local": {"wall_s": round(local_s, 2), "audio_per_s": round(audio_s / local_s, 1),
                     "rtf_without_load": round(runs[0][1].rtf, 1)}, "ray_cpus": cpus}
    want = index_files(work / "local")
    ray = engine.import_ray()
    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=engine.runtime_env(), log_to_driver=False)
    out["ray_start_s"] = round(time.perf_counter() - t, 1)
    try:
        for w in workers:
            rs = [_timed(lib, ckpt, work / f"ray{w}", engine="ray", workers=w) for _ in range(repeats)]
            wall = median([r[0] for r in rs])
            out[f"ray_{w}"] = {"wall_s": round(wall, 2), "audio_per_s": round(audio_s / wall, 1),
                               "ratio_to_local": round(local_s / wall, 3),
                               "identical_index": index_files(work / f"ray{w}") == want}
    finally:
        ray.shutdown()
    return out


def _fmt(r: dict, workers: list[int]) -> str:
    lines = [f"{r['audio_s'] / 60:.1f} min of speech, {r['files']} files, {r['segments']} segments; "
             f"Ray started once in {r['ray_start_s']} s on {r['ray_cpus']} CPUs (not counted)",
             f"{'engine':<16}{'wall s':>8}{'audio s/s':>11}{'x local':>9}  same index bytes",
             f"{'local':<16}{r['local']['wall_s']:>8.2f}{r['local']['audio_per_s']:>11.1f}{1.0:>9.3f}  -"]
    for w in workers:
        x = r[f"ray_{w}"]
        lines.append(f"{f'ray, {w} worker' + ('s' if w > 1 else ''):<16}{x['wall_s']:>8.2f}{x['audio_per_s']:>11.1f}"
                     f"{x['ratio_to_local']:>9.3f}  {'yes' if x['identical_index'] else 'NO'}")
    lines.append(f"(local without its model load: {r['local']['rtf_without_load']}x real time)")
    return "\n".join(lines)


def main(argv=None) -> int:
    from claspkit.bench.search import load_average

    p = argparse.ArgumentParser(prog="python -m claspkit.bench.ray", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=4.0, help="minutes of speech to index (default 4)")
    p.add_argument("--workers", default="1,2", help="comma-separated actors per backbone (default 1,2)")
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray instance")
    p.add_argument("--repeats", type=int, default=1, help="runs per engine; the median is reported (default 1)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers must be comma-separated integers, got {args.workers!r}")
    if min(workers) < 1 or args.minutes <= 0 or args.repeats < 1 or args.cpus < 1:
        p.error("--workers, --minutes, --repeats and --cpus must be positive")
    print(f"claspkit Ray engine benchmark; load average {load_average()} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="claspkit-bench-ray-") as tmp:
        result = bench(args.minutes, workers, args.cpus, args.repeats, Path(tmp))
    result["load_average_end"] = load_average()
    print(_fmt(result, workers))
    print(f"load average at the end {result['load_average_end']}")
    if args.json:
        from claspkit.paths import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0 if all(result[f"ray_{w}"]["identical_index"] for w in workers) else 1


if __name__ == "__main__":
    sys.exit(main())
