"""The transcribe-then-search cascade: the baseline CLASP has to beat (paper Stage 3).

The cascade turns speech into text with an ASR model and embeds the transcript with the same
frozen text encoder that CLASP aligns to, so both systems are scored against one text space.
This module holds the cascade itself, a word error rate with one documented normaliser, a
content-addressed transcript cache, and the size/speed measurement behind the paper's efficiency
claim (CLASP about half the size of the HuBERT-ASR pipeline and about 10% faster).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from claspkit.data.spoken import spoken_form
from claspkit.errors import BackboneError, DataMissingError, ParamError
from claspkit.paths import atomic_write_text, data_dir, sha256_file

__all__ = [
    "normalize_for_wer", "edit_counts", "wer_details", "wer", "default_transcript_root", "TranscriptCache",
    "transcribe_all", "cascade_embeddings", "embed_transcripts", "encoder_bytes", "fusion_bytes", "STAGE_NAMES",
    "measure_pipelines", "efficiency_rows",
]

# --------------------------------------------------------------------------------------------
# Word error rate
# --------------------------------------------------------------------------------------------


def normalize_for_wer(text: str) -> str:
    """The WER normaliser, applied to references and hypotheses alike: the text as it is heard
    (``claspkit.data.spoken.spoken_form``: NFKC, lower-case, dashes to spaces, other punctuation deleted,
    whitespace collapsed), the same rule that keeps spoken twins out of different corpus splits.

    It does not spell out numbers ('5' vs 'five' still counts as an error), as Whisper-style
    normalisers do; the WER of a system that writes digits for spoken numbers is a little higher.
    """
    return spoken_form(text)


def edit_counts(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-edit alignment of two word lists.

    Plain Levenshtein dynamic programming over words; among alignments of equal total cost the
    one with the fewest substitutions (then deletions) is kept, so the split is deterministic.
    """
    n, m = len(ref), len(hyp)
    # each cell: (total, subs, dels, ins)
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        r = ref[i - 1]
        for j in range(1, m + 1):
            d = prev[j - 1]
            if hyp[j - 1] == r:
                diag = d
            else:
                diag = (d[0] + 1, d[1] + 1, d[2], d[3])
            up = prev[j]
            dele = (up[0] + 1, up[1], up[2] + 1, up[3])
            left = cur[j - 1]
            ins = (left[0] + 1, left[1], left[2], left[3] + 1)
            cur.append(min(diag, dele, ins))
        prev = cur
    total, s, dl, ins = prev[m]
    return s, dl, ins


def wer_details(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """Corpus-level WER and its parts: total word edits / total reference words (after normalising)."""
    if isinstance(refs, str) or isinstance(hyps, str):
        raise ParamError("wer() takes lists of sentences, not one string: wrap it as [text]")
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ParamError(f"wer() needs one hypothesis per reference, got {len(refs)} references and "
                         f"{len(hyps)} hypotheses: pass aligned lists")
    subs = dels = ins = words = 0
    for r, h in zip(refs, hyps):
        rw, hw = normalize_for_wer(r).split(), normalize_for_wer(h).split()
        s, d, i = edit_counts(rw, hw)
        subs, dels, ins, words = subs + s, dels + d, ins + i, words + len(rw)
    if words == 0:
        raise ParamError("wer() got no reference words (all references empty after normalising): "
                         "pass the real transcripts as references")
    return {"wer": (subs + dels + ins) / words, "substitutions": subs, "deletions": dels,
            "insertions": ins, "ref_words": words, "n": len(refs)}


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level word error rate: total edits / total reference words, see :func:`normalize_for_wer`."""
    return wer_details(refs, hyps)["wer"]


# --------------------------------------------------------------------------------------------
# Transcript cache
# --------------------------------------------------------------------------------------------

file_sha256 = sha256_file  # the transcript cache keys audio by content


def default_transcript_root() -> Path:
    return data_dir() / "transcripts"


class TranscriptCache:
    """One small JSON file per (ASR model, audio content, language), written atomically.

    Content-addressed like the feature cache: the key hashes the ASR's ``cache_id`` (which changes
    with weights or decoding settings), the audio file's sha256 and the forced language, so a
    changed file or model is transcribed again and nothing else is. One file per item means an
    interrupted run keeps everything finished before the interruption and never a half entry.
    """

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_transcript_root()

    @staticmethod
    def key(cache_id: str, audio_sha256: str, language: str | None) -> str:
        raw = f"{cache_id}\0{audio_sha256}\0{language or ''}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get_entry(self, key: str) -> dict | None:
        """The whole entry (text and what was stored beside it), or None when absent or unreadable."""
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # an unreadable entry is recomputed, never trusted
        return entry if isinstance(entry, dict) and isinstance(entry.get("text"), str) else None

    def get(self, key: str) -> str | None:
        entry = self.get_entry(key)
        return None if entry is None else entry["text"]

    def put(self, key: str, text: str, meta: dict | None = None) -> None:
        atomic_write_text(self._path(key), json.dumps({"text": text, **(meta or {})}, ensure_ascii=False))


def _cache_id(encoder) -> str:
    cid = getattr(encoder, "cache_id", None)
    if not cid:
        raise BackboneError(f"encoder {getattr(encoder, 'name', encoder)!r} has no cache_id: create it with "
                            "claspkit.encoders.backbones.create_backbone so its outputs can be cached")
    return str(cid)


def _progress(iterable, total, desc, progress):
    if not progress:
        return iterable
    from claspkit.progress import progress_bar

    return progress_bar(iterable, total=total, desc=desc, unit="batch")


def transcribe_all(asr_encoder, paths: Sequence, batch: int = 8, progress: bool = True,
                   language: str | None = None, cache: TranscriptCache | str | Path | None = None,
                   loader: Callable | None = None) -> list[str]:
    """Transcribe audio files with an ASR backbone, through the transcript cache.

    ``paths`` are audio files (resolve manifest rows with ``claspkit.data.corpus.audio_path`` first).
    Already-cached items are not decoded or transcribed again; new ones are done ``batch`` at a
    time and stored as each batch finishes. An empty transcript is a valid answer (the model heard
    no words) and is kept; a failing file raises the loader's error naming it.
    """
    if batch < 1:
        raise ParamError(f"batch must be >= 1, got {batch}")
    if not isinstance(cache, TranscriptCache):
        cache = TranscriptCache(cache)
    if loader is None:
        from claspkit.data.audio import load_audio as loader
    cid = _cache_id(asr_encoder)
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise DataMissingError(f"audio file {p} does not exist: rebuild the corpus (notebook 01) "
                                   "or fix the manifest path")
    keys = [cache.key(cid, file_sha256(p), language) for p in paths]
    out: list[str | None] = [cache.get(k) for k in keys]
    todo = [i for i, t in enumerate(out) if t is None]
    chunks = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    for chunk in _progress(chunks, len(chunks), f"transcribe ({getattr(asr_encoder, 'name', 'asr')})", progress):
        waves = [loader(paths[i]) for i in chunk]
        texts = asr_encoder.transcribe(waves, language=language)
        if len(texts) != len(chunk):
            raise BackboneError(f"ASR {getattr(asr_encoder, 'name', '?')!r} returned {len(texts)} transcripts "
                                f"for {len(chunk)} inputs: the backbone is broken, report it")
        for i, t in zip(chunk, texts):
            t = str(t).strip()
            cache.put(keys[i], t, {"asr": cid, "language": language})
            out[i] = t
    return [str(t) for t in out]


def cascade_embeddings(asr, text_encoder, paths: Sequence, batch: int = 8, progress: bool = True,
                       language: str | None = None, cache: TranscriptCache | str | Path | None = None,
                       loader: Callable | None = None, text_cache=None) -> tuple[list[str], np.ndarray]:
    """The cascade's gallery: transcripts and their embeddings by the frozen text encoder.

    Returns ``(transcripts, embeddings)`` with embeddings float32 (n, text_dim), row i for path i, from
    :func:`embed_transcripts` (``text_cache``: None = the default ``data/features``, False = none, or a folder).
    """
    transcripts = transcribe_all(asr, paths, batch=batch, progress=progress, language=language,
                                 cache=cache, loader=loader)
    return transcripts, embed_transcripts(text_encoder, transcripts, text_cache=text_cache, progress=progress)


def embed_transcripts(text_encoder, transcripts: Sequence[str], text_cache=None, progress: bool = True) -> np.ndarray:
    """Transcripts embedded as the cascade indexes them: float32 (n, text_dim), row i for transcript i.

    Through the feature cache (``text_cache``: None = the default ``data/features``, False = none, or a folder),
    like every other text. An empty transcript (the ASR heard no words) is embedded as the empty string: that is
    what a real cascade would index, and its rank shows the failure honestly (the feature cache refuses empty
    texts, so those few go straight to the encoder).
    """
    from claspkit.encoders.features import extract_text

    transcripts = [str(t) for t in transcripts]
    filled = [i for i, t in enumerate(transcripts) if t.strip()]
    empty = [i for i, t in enumerate(transcripts) if not t.strip()]
    parts = {}
    if filled:
        parts["filled"] = np.asarray(extract_text(text_encoder, [transcripts[i] for i in filled], cache=text_cache,
                                                  progress=progress, desc="embed transcripts"), dtype=np.float32)
    if empty:
        parts["empty"] = _encode_texts(text_encoder, ["" for _ in empty])
    dim = next(iter(parts.values())).shape[1] if parts else int(getattr(text_encoder, "dim", 0))
    emb = np.zeros((len(transcripts), dim), dtype=np.float32)
    if filled:
        emb[filled] = parts["filled"]
    if empty:
        emb[empty] = parts["empty"]
    return emb


def _encode_texts(text_encoder, texts: list[str], batch: int = 64) -> np.ndarray:
    parts = [np.asarray(text_encoder.encode(texts[i:i + batch]), dtype=np.float32)
             for i in range(0, len(texts), batch)]
    emb = np.concatenate(parts)
    if emb.shape[0] != len(texts) or not np.all(np.isfinite(emb)):
        raise BackboneError(f"text encoder {getattr(text_encoder, 'name', '?')!r} returned {emb.shape} "
                            f"(or non-finite values) for {len(texts)} texts: the backbone is broken")
    return emb


# --------------------------------------------------------------------------------------------
# The efficiency claim
# --------------------------------------------------------------------------------------------

def encoder_bytes(encoder) -> int:
    """Bytes of weights an encoder loads (its ``weight_bytes``), so pipeline sizes add up honestly."""
    wb = getattr(encoder, "weight_bytes", None)
    if wb is None:
        raise BackboneError(f"encoder {getattr(encoder, 'name', encoder)!r} does not report weight_bytes: "
                            "create it with claspkit.encoders.backbones.create_backbone")
    return int(wb)


def fusion_bytes(fusion) -> int:
    """Parameters of the fusion head at float32: 4 bytes each (buffers such as BatchNorm stats excluded)."""
    return int(sum(p.numel() for p in fusion.parameters())) * 4


STAGE_NAMES = {"speech": "speech encoder", "image": "image encoder", "fusion": "fusion"}


def _clasp_bytes(model) -> int:
    return sum(encoder_bytes(e) for e in model.encoders.values()) + fusion_bytes(model.head)


def measure_pipelines(model, asr, waves: Sequence[np.ndarray], batch_size: int = 8, language: str | None = None,
                      warmup: bool = True, others: dict | None = None) -> dict:
    """Time both ways of indexing the same utterances, in one run, stage by stage.

    (a) CLASP: ``model`` (a :class:`claspkit.model.CLASP`) embeds the speech exactly as ``claspkit index``
        does: its branches (speech encoder, spectrogram image encoder) run concurrently, then the head.
    (b) cascade: ASR transcription + the model's own text encoder on the transcript.
    The query side (embedding the user's text) is the same for both and is left out, which is how
    the paper's 1.5 GB vs 3.15 GB counts (HuBERT + EfficientNet-B7 + fusion vs HuBERT-ASR + LaBSE).

    ``waves`` are 16 kHz mono arrays (or audio paths, loaded with ``claspkit.data.audio.load_audio`` before
    any clock starts), so file reading is not timed. With ``warmup`` one utterance goes through every
    stage first, so lazy weight loading is not timed either. The two pipelines alternate batch by batch.

    Returns ``{"summary": DataFrame (one row per pipeline: kind clasp|cascade, pipeline, weight_bytes,
    weight_mb, seconds (wall), s_per_utt, n), "stages": DataFrame (pipeline, stage, seconds, s_per_utt, share
    of the pipeline's summed stage time; CLASP's concurrent branches can add up to more than its wall time),
    "size_ratio": cascade bytes / CLASP bytes, "speed_ratio": cascade s / CLASP s,
    "time_saved": 1 - CLASP s / cascade s, "batch_seconds": {pipeline kind: wall seconds of each batch},
    "batch_sizes": utterances in each batch}`` (the per-batch times give a spread, not only a total).

    ``others`` (name -> CLASP) are more heads timed in the same alternation, each batch right after
    ``model``'s: they get one ``summary`` row each (``kind`` = their name, wall time only), so several
    heads are compared with one cascade timing instead of one per head.
    """
    waves = list(waves)
    if any(isinstance(w, (str, Path)) for w in waves):
        from claspkit.data.audio import load_audio

        waves = [load_audio(w) if isinstance(w, (str, Path)) else w for w in waves]
    n = len(waves)
    if n == 0:
        raise ParamError("measure_pipelines needs at least one utterance: pass a few test waveforms")
    if batch_size < 1:
        raise ParamError(f"batch_size must be >= 1, got {batch_size}")
    batches = [waves[i:i + batch_size] for i in range(0, n, batch_size)]
    clasp_bytes = _clasp_bytes(model)
    casc_bytes = encoder_bytes(asr) + encoder_bytes(model.text)
    others = dict(others or {})
    if {"clasp", "cascade"} & set(others):
        raise ParamError("others: 'clasp' and 'cascade' name the two main pipelines; give the extra heads other names")
    wall = {"clasp": 0.0, "cascade": 0.0, **{name: 0.0 for name in others}}
    per_batch = {name: [] for name in wall}
    clasp_t = {STAGE_NAMES[r]: 0.0 for r in (*model.encoders, "fusion")}
    casc_t = {"ASR": 0.0, "text encoder": 0.0}

    def clasp_batch(ws, timed):
        t, t0 = {}, time.perf_counter()
        model.encode_waves(ws, batch_size=len(ws), timings=t)
        if timed:
            per_batch["clasp"].append(time.perf_counter() - t0)
            wall["clasp"] += per_batch["clasp"][-1]
            for role, seconds in t.items():
                clasp_t[STAGE_NAMES[role]] += seconds

    def cascade_batch(ws, timed):
        t0 = time.perf_counter()
        texts = asr.transcribe(ws, language=language)
        t1 = time.perf_counter()
        model.text.encode(list(texts))
        t2 = time.perf_counter()
        if timed:
            casc_t["ASR"] += t1 - t0
            casc_t["text encoder"] += t2 - t1
            wall["cascade"] += t2 - t0
            per_batch["cascade"].append(t2 - t0)

    def other_batch(name, ws, timed):
        t0 = time.perf_counter()
        others[name].encode_waves(ws, batch_size=len(ws))
        if timed:
            per_batch[name].append(time.perf_counter() - t0)
            wall[name] += per_batch[name][-1]

    if warmup:
        clasp_batch(waves[:1], False)
        for name in others:
            other_batch(name, waves[:1], False)
        cascade_batch(waves[:1], False)
    for ws in batches:
        clasp_batch(ws, True)
        for name in others:
            other_batch(name, ws, True)
        cascade_batch(ws, True)

    names = {"clasp": "CLASP (speech + image encoders + fusion)" if "image" in model.encoders
             else "CLASP (speech encoder + fusion)", "cascade": "cascade (ASR + text encoder)"}
    stages = []
    for pipe, timing in (("clasp", clasp_t), ("cascade", casc_t)):
        total = sum(timing.values())
        for stage, sec in timing.items():
            stages.append({"pipeline": names[pipe], "stage": stage, "seconds": sec, "s_per_utt": sec / n,
                           "share": sec / total if total > 0 else float("nan")})
    clasp_s, casc_s = wall["clasp"], wall["cascade"]
    summary = pd.DataFrame([
        {"kind": "clasp", "pipeline": names["clasp"], "weight_bytes": clasp_bytes, "weight_mb": clasp_bytes / 1e6,
         "seconds": clasp_s, "s_per_utt": clasp_s / n, "n": n},
        {"kind": "cascade", "pipeline": names["cascade"], "weight_bytes": casc_bytes, "weight_mb": casc_bytes / 1e6,
         "seconds": casc_s, "s_per_utt": casc_s / n, "n": n},
        *({"kind": name, "pipeline": f"CLASP {name}", "weight_bytes": b, "weight_mb": b / 1e6,
           "seconds": wall[name], "s_per_utt": wall[name] / n, "n": n}
          for name, b in ((name, _clasp_bytes(m)) for name, m in others.items())),
    ])
    return {
        "summary": summary,
        "stages": pd.DataFrame(stages),
        "size_ratio": casc_bytes / clasp_bytes if clasp_bytes else float("inf"),
        "speed_ratio": casc_s / clasp_s if clasp_s > 0 else float("inf"),
        "time_saved": 1 - clasp_s / casc_s if casc_s > 0 else float("nan"),
        "batch_seconds": per_batch,
        "batch_sizes": [len(ws) for ws in batches],
    }


def efficiency_rows(result: dict) -> tuple[list[dict], dict]:
    """``(rows, meta)`` of a :func:`measure_pipelines` result for ``results.write_stage(preset, 'efficiency', ...)``,
    the file the README's efficiency sentence (``claspkit.evaluation.report.efficiency_summary``) is read from."""
    rows = [{"stage": "efficiency", "system": r["pipeline"], "kind": r["kind"], "weight_bytes": int(r["weight_bytes"]),
             "seconds": float(r["seconds"]), "s_per_utt": float(r["s_per_utt"]), "n": int(r["n"])}
            for r in result["summary"].to_dict("records")]
    meta = {k: float(result[k]) for k in ("size_ratio", "speed_ratio", "time_saved")}
    meta["stages"] = [{k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in r.items()}
                      for r in result["stages"].to_dict("records")]
    return rows, meta
