"""TTS voice benchmark: ``python -m claspkit.bench.voices [--sentences 10] [--voices LIST | --preset voices] [--wer]``.

For each voice, how fast it speaks on one core (x real time: seconds of audio per wall second of ``synthesize``
calls into a temp folder, after one warm-up sentence) and, with ``--wer``, how intelligible it is: the word error
rate of Whisper tiny.en on its sentences (``claspkit.evaluation.asr.wer_details``), for English voices only.
The sentences are a fixed seeded sample of cleaned Brown sentences (``claspkit.data.brown.clean``,
``claspkit.data.corpus.sample_sentences``), the same for every voice. A voice whose engine cannot be installed or
downloaded here, or that gives no audio, is listed as skipped with the reason; a misspelt voice is an argument error.
The JSON carries the CPU model, date, commit and load average it was measured under (``claspkit.bench.machine``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from claspkit.bench.machine import load_average, machine_info, one_thread, run_and_save
from claspkit.errors import ClaspkitError, ParamError

__all__ = ["DEFAULT_OUT", "ASR", "WARM_UP", "brown_sentences", "voice_language", "resolve_voices", "asr_model",
           "bench_voice", "score_wer", "bench_voices", "format_table", "main"]

DEFAULT_OUT = "results/bench/voices.json"
ASR = "whisper-tiny.en"
WARM_UP = "This sentence only wakes the engine up."


def brown_sentences(n: int, seed: int = 42) -> list[str]:
    """``n`` cleaned Brown sentences, every category in proportion, drawn as the corpus draws them."""
    from claspkit.data.brown import clean, load_brown
    from claspkit.data.corpus import sample_sentences

    kept, _ = clean(load_brown())
    return [s.text for s in sample_sentences(kept, n, seed)]


def voice_language(spec: str) -> str | None:
    """The language a voice speaks: its list in ``voicesets.BY_LANGUAGE``, else an espeak voice's language code,
    else None (unknown: no WER is computed)."""
    from claspkit.data.tts import parse_voice
    from claspkit.data.tts.voicesets import BY_LANGUAGE

    vs = parse_voice(spec)
    for lang, voices in BY_LANGUAGE.items():
        if vs.spec in voices or f"{vs.engine}:{vs.voice}" in voices:
            return lang
    if vs.engine in ("espeak", "espeak-system"):
        return vs.voice.split("-")[0].lower()
    return None


def resolve_voices(voices: str | None, preset: str | None) -> list[str]:
    """The voices to measure: ``--voices`` (comma-separated specs) or the ``voices`` of ``params/<preset>.yaml``."""
    from claspkit.data.tts import parse_voice

    if voices is not None:
        out = [v.strip() for v in voices.split(",") if v.strip()]
        if not out:
            raise ParamError("--voices is empty: list voice specs separated by commas, e.g. espeak:en-us,flite:slt")
    else:
        from claspkit.config import load_params

        out = list(load_params(preset or "voices").voices)
    return [parse_voice(v).spec for v in out]


def asr_model():
    from claspkit.encoders.backbones import create_backbone

    return create_backbone("asr", ASR)


def _synthesizer(spec: str):
    """(engine, None) when the voice can speak here, (None, reason) when its engine cannot be set up; a voice the
    installed engine does not know raises ParamError."""
    from claspkit.data.tts import get_synthesizer, parse_voice

    vs = parse_voice(spec)
    try:
        syn = get_synthesizer(vs.engine)
        syn.check(vs)
    except ParamError:
        raise
    except (ClaspkitError, OSError) as e:
        return None, f"{type(e).__name__}: {e}"
    return syn, None


def bench_voice(spec: str, sentences: list[str], work: Path, ready: tuple | None = None) -> dict:
    """One voice: audio seconds, wall seconds of its ``synthesize`` calls (one thread), x real time, the files.
    ``ready`` is ``_synthesizer(spec)`` when already asked."""
    row = {"voice": spec, "language": voice_language(spec)}
    syn, reason = ready or _synthesizer(spec)
    if syn is None:
        return {**row, "status": "skipped", "reason": reason}
    folder = work / spec.replace(":", "_").replace("/", "_")
    paths = [folder / f"{i:03d}.wav" for i in range(len(sentences))]
    try:
        with one_thread():
            syn.synthesize(WARM_UP, spec, folder / "warm-up.wav")
            t = time.perf_counter()
            audio_s = sum(syn.synthesize(text, spec, p) for text, p in zip(sentences, paths))
            wall = time.perf_counter() - t
    except (ClaspkitError, OSError) as e:
        return {**row, "status": "skipped", "reason": f"{type(e).__name__}: {e}"}
    return {**row, "status": "ok", "engine_version": syn.version, "audio_s": round(audio_s, 3),
            "synth_wall_s": wall, "x_real_time": audio_s / wall, "paths": [str(p) for p in paths]}


def score_wer(rows: list[dict], sentences: list[str], asr) -> None:
    """Adds ``wer`` (``wer_details``: WER, edits, reference words) and the transcripts to every English row."""
    from claspkit.data.audio import load_audio
    from claspkit.evaluation.asr import wer_details

    for r in rows:
        if r["status"] != "ok" or r["language"] != "en":
            continue
        hyps = asr.transcribe([load_audio(p) for p in r["paths"]])
        r["wer"] = wer_details(sentences, hyps)
        r["transcripts"] = hyps


def bench_voices(voices: list[str], n_sentences: int = 10, wer: bool = False, seed: int = 42) -> dict:
    if n_sentences < 1:
        raise ParamError(f"--sentences must be at least 1, got {n_sentences}")
    ready = {v: _synthesizer(v) for v in voices}     # a misspelt voice fails before minutes of synthesis
    sentences = brown_sentences(n_sentences, seed)
    out = {**machine_info(), "sentences": n_sentences, "seed": seed, "texts": sentences,
           "asr": ASR if wer else None, "voices": []}
    with tempfile.TemporaryDirectory(prefix="claspkit-voices-") as tmp:
        for v in voices:
            row = bench_voice(v, sentences, Path(tmp), ready[v])
            print(f"  {v}: " + (f"{row['x_real_time']:.1f}x real time" if row["status"] == "ok"
                                else f"skipped ({row['reason']})"), flush=True)
            out["voices"].append(row)
        if wer and any(r["status"] == "ok" and r["language"] == "en" for r in out["voices"]):
            score_wer(out["voices"], sentences, asr_model())
    for r in out["voices"]:
        r.pop("paths", None)
    out["load_average_end"] = load_average()
    return out


def format_table(result: dict) -> str:
    lines = [f"{result['sentences']} Brown sentences (seed {result['seed']}), synthesis on one thread, "
             f"{result['cpu']}; load average {result['load_average']} -> {result['load_average_end']}",
             f"{'voice':<24} {'lang':<5} {'audio s':>8} {'x real time':>12} {'WER':>7}"]
    for r in result["voices"]:
        if r["status"] != "ok":
            lines.append(f"{r['voice']:<24} {r['language'] or '?':<5} skipped: {r['reason']}")
            continue
        wer = f"{r['wer']['wer']:>7.3f}" if "wer" in r else f"{'-':>7}"
        lines.append(f"{r['voice']:<24} {r['language'] or '?':<5} {r['audio_s']:>8.1f} {r['x_real_time']:>12.1f} "
                     f"{wer}")
    if result["asr"]:
        lines.append(f"WER: {result['asr']} on each English voice's sentences (corpus-level, normalised)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m claspkit.bench.voices", description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=10, help="Brown sentences per voice (default 10)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--voices", default=None, metavar="LIST", help="comma-separated voice specs, e.g. "
                       "espeak:en-us,flite:slt")
    which.add_argument("--preset", default=None, help="the voices of params/<preset>.yaml (default: voices)")
    ap.add_argument("--wer", action="store_true", help=f"also the {ASR} WER of each English voice")
    ap.add_argument("--seed", type=int, default=42, help="draws the Brown sentences (default 42, the corpus seed)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"where the JSON goes (default {DEFAULT_OUT}); '' for none")
    args = ap.parse_args(argv)
    return run_and_save("bench.voices", lambda: bench_voices(resolve_voices(args.voices, args.preset),
                                                             args.sentences, args.wer, args.seed),
                        format_table, args.out)


if __name__ == "__main__":
    sys.exit(main())
