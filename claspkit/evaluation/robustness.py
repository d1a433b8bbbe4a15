"""Robustness: CLASP beside the cascade on noisy, unseen-voice, real and long recordings (notebook 09).

The paper tests one clean synthetic voice. Every function here scores the CLASP heads and the
transcribe-then-search cascade on *the same items*, on the full gallery, with bootstrap CIs, so a
row never stands without its comparison:

* **noise** (``noisy_versions``): white noise, or babble made from other clips of the same set, mixed
  at a given SNR (speech power over noise power, over the whole clip). The mixture is peak-normalised
  to 0.95 and written once as 16 kHz PCM16 under ``data/audio/derived/noise/`` in a folder named by
  the recipe, the SNR, the seed and (for babble) the digest of the pool, so the features and the
  transcripts of a noisy clip are cached like any other audio and a rerun is byte-identical. Each
  item's noise is drawn from a generator seeded by (seed, the clean file's sha256), so white noise
  does not depend on the order or the size of the set; babble does (its talkers are drawn from the
  set in order), which is why the set's digest names its folder.
* **augmentation** (``augmented_copies``, ``augmented_stage``, issue 11): one speed-perturbed,
  noisy copy of each training clip added to training, so the same sections can say what it buys.
* **unseen voice** (``unseen_voice_heads``): the paper head retrained without one TTS voice (in
  training and validation), beside a control trained on as many pairs drawn from all voices, and the
  head trained on everything; all are scored on the test items of that voice.
* **real speech** (``real_prompts``, ``parallel_set``): the Asterisk prompts (``claspkit.data.asterisk``),
  sentence-like and deduplicated; the cascade transcribes with the speech's own ``language=``.
* **long recordings** (``long_recordings``, ``long_search``): prompts joined with pauses into files of
  a few minutes, indexed with ``claspkit.search.query.build_index`` and searched; a hit counts when it is the
  segment that overlaps the prompt most, and its timestamps count when both edges are within
  ``tolerance_s`` of the prompt's known boundaries.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from claspkit.constants import FRAME_FUSIONS, SAMPLE_RATE
from claspkit.data.augment.base import PEAK, derived_root as _derived_root, item_rng as _item_rng, \
    pcm16 as _pcm16, write_wav as _write_wav
from claspkit.data.augment.copies import SPEEDS, augmented_copies, channel_copies  # noqa: F401 (SPEEDS: re-export)
from claspkit.data.augment.noise import BABBLE_TALKERS, NOISE_KINDS, babble_noise, mix_at_snr, white_noise
from claspkit.errors import AudioError, ClaspkitError, ParamError, choices_hint

__all__ = ["NOISE_KINDS", "SNRS_DB", "RECIPE", "mix_at_snr", "white_noise", "babble_noise", "noisy_versions",
           "augmented_copies", "augmented_stage",
           "Systems", "make_systems", "similarities", "evaluate", "noise_sweep", "unseen_voice_heads", "voice_items",
           "real_prompts", "parallel_set", "cross_lingual", "long_recordings", "long_search", "summary_table"]

SNRS_DB = (20, 10, 5, 0)
RECIPE = "noise-v1"          # change when the mixing changes: it names the folders of derived audio
LONG_RECIPE = "long-v1"


# ---------------------------------------------------------------------------------------------- noise
def noisy_versions(paths: Sequence, kind: str, snr_db: float, seed: int = 42, out_dir=None,
                   talkers: int = BABBLE_TALKERS, progress: bool = False) -> list[Path]:
    """A noisy copy of each file (written once, atomically), in ``paths`` order.

    Babble for item i is made from the *other* files of ``paths``. ``out_dir`` defaults to
    ``data/audio/derived``; files already there are reused, so an interrupted sweep resumes.
    """
    from claspkit.data.audio import load_audio
    from claspkit.encoders.features import FeatureCache
    from claspkit.progress import progress_bar

    if kind not in NOISE_KINDS:
        raise ParamError(f"unknown noise {choices_hint(kind, NOISE_KINDS)}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ParamError("no audio files given to add noise to")
    shas = FeatureCache().file_hashes(paths)
    recipe = {"recipe": RECIPE, "kind": kind, "snr_db": float(snr_db), "seed": int(seed)}
    if kind == "babble":
        recipe.update(talkers=int(talkers), pool=hashlib.sha256("\n".join(shas).encode()).hexdigest())
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    folder = _derived_root(out_dir) / "noise" / f"{kind}-{float(snr_db):g}dB-seed{seed}-{digest}"
    out = [folder / f"{sha[:16]}.wav" for sha in shas]
    todo = [i for i, p in enumerate(out) if not p.is_file()]
    if not todo:
        return out
    waves = [load_audio(p) for p in paths]
    sha_index = {}
    for i, sha in enumerate(shas):
        sha_index.setdefault(sha, i)
    for i in progress_bar(todo, desc=f"{kind} noise at {snr_db:g} dB", unit="clip", disable=not progress):
        rng = _item_rng(seed, shas[i], snr_db)
        clean = np.asarray(waves[i], dtype=np.float64)
        if kind == "white":
            noise = white_noise(len(clean), rng)
        else:
            same = {j for j, s in enumerate(shas) if s == shas[i]}
            pool = [np.zeros(1) if j in same else w for j, w in enumerate(waves)]
            noise = babble_noise(len(clean), pool, sha_index[shas[i]], rng, talkers)
        try:
            mixed = mix_at_snr(clean, noise, snr_db)
        except AudioError as e:
            raise AudioError(f"{paths[i]}: {e}") from None
        _write_wav(out[i], _pcm16(mixed))
    (folder / "recipe.json").write_text(json.dumps(recipe, indent=1, sort_keys=True) + "\n")
    return out


# ------------------------------------------------------------------------------------- augmentation
def augmented_stage(stage, seed: int | None = None, progress: bool = False, channels=None, **recipe):
    """``stage``'s head retrained on its training pairs plus one augmented copy of each (same texts;
    validation and test untouched), checkpoint ``<name>-augmented``. ``recipe`` goes to
    :func:`augmented_copies`. ``channels`` (default ``P.robust_channels``; None keeps the speed-and-noise
    copies) is a channel recipe (``claspkit.data.augment.Recipe.parse``: rooms, noise, gain, phone lines and
    codecs): the copies then come from :func:`channel_copies`, checkpoint ``<name>-channels-<digest>``."""
    from claspkit.experiments import pipeline
    from claspkit.data.augment.recipe import Recipe
    from claspkit.encoders.frames import Frames

    if stage.P.fusion in FRAME_FUSIONS:
        raise ParamError("augmentation is built for the paper heads (mean-pooled features); pass the Stage-3 stage")
    train = stage.data["train"]
    seed = stage.P.seed if seed is None else seed
    channels = stage.P.get("robust_channels") if channels is None else channels
    paths = pipeline.audio_paths(stage.manifest, train.ids)
    if channels is None:
        copies, name = augmented_copies(paths, seed=seed, progress=progress, **recipe), "augmented"
    elif recipe:
        raise ParamError(f"{sorted(recipe)} set the speed-and-noise copies; with channels, put the ranges in the "
                         "channel recipe (e.g. {'noise': {'snr_db': [0, 20]}})")
    else:
        channels = Recipe.parse(channels)
        copies = channel_copies(paths, channels, seed=seed, progress=progress)
        name = f"channels-{channels.digest(seed)}"
    listing = pd.DataFrame({"path": [str(p) for p in copies], "text": train.texts})
    feats = pipeline.features(stage.P, listing, progress=progress)
    both = pipeline.Split(ids=[*train.ids, *(f"{i}+augmented" for i in train.ids)], texts=[*train.texts, *train.texts],
                          arrays={r: np.concatenate([a, np.asarray(feats[r])]) for r, a in train.arrays.items()
                                  if not isinstance(a, Frames)})
    data = {**stage.data, "train": both}
    trained = pipeline.fit(stage.P, data, f"{stage.trained.name}-{name}", progress=progress)
    return pipeline.Stage3(stage.P, stage.manifest, data, trained, stage.chosen_by)


# ------------------------------------------------------------------------------------------ systems
@dataclass
class Systems:
    """What every section scores on the same items: CLASP heads (label -> ``pipeline.Stage3``) and the
    cascade (an ASR model whose transcripts the heads' shared text encoder embeds)."""

    P: object
    heads: dict
    asr: object
    asr_name: str
    text_encoder: object

    @property
    def labels(self) -> list[str]:
        return [*self.heads, f"ASR cascade ({self.asr_name})"]


def make_systems(P, heads: dict, asr_backbone: str, text_encoder=None) -> Systems:
    """``heads`` must share one text encoder: the gallery (or the queries) are the same vectors for all."""
    from claspkit.encoders.backbones import create_backbone

    texts = {st.P.text_backbone for st in heads.values()}
    if len(texts) != 1:
        raise ClaspkitError(f"the heads map speech into different text spaces ({sorted(texts)}): score them "
                            "in separate Systems")
    text = text_encoder or create_backbone("text", texts.pop())
    return Systems(P, dict(heads), create_backbone("asr", asr_backbone), asr_backbone, text)


def similarities(S: Systems, paths: Sequence, texts: Sequence[str], language: str = "en",
                 references: Sequence[str] | None = None, progress: bool = False) -> tuple[dict, float | None]:
    """Speech ``paths`` x ``texts`` similarity of every system on the same items (label -> matrix), and the
    cascade's WER against ``references`` (None without them). ``language`` is the language spoken."""
    from claspkit.experiments import pipeline
    from claspkit.evaluation import asr
    from claspkit.encoders.features import extract_text

    if len(paths) != len(texts) or not len(paths):
        raise ParamError(f"need as many texts as audio files (and at least one), got {len(paths)} and {len(texts)}")
    gallery = np.asarray(extract_text(S.text_encoder, list(texts), progress=False), dtype=np.float32)
    sims = {label: pipeline.similarity(pipeline.speech_vectors(stage, paths, progress=progress), gallery)
            for label, stage in S.heads.items()}
    transcripts, emb = asr.cascade_embeddings(S.asr, S.text_encoder, list(paths), language=language,
                                              progress=progress)
    sims[S.labels[-1]] = pipeline.similarity(emb, gallery)
    wer = round(asr.wer(list(references), transcripts), 4) if references is not None else None
    return sims, wer


def evaluate(S: Systems, paths: Sequence, texts: Sequence[str], section: str, language: str = "en",
             directions=("s2t", "t2s"), references: Sequence[str] | None = None, progress: bool = False,
             **fields) -> list[dict]:
    """Full-gallery rows for every system: speech ``paths`` x ``texts`` (item i is the pair of i).

    ``language`` is the language spoken (the cascade's ``language=``); ``references`` the transcripts
    in that language, for the cascade's WER.
    """
    from claspkit.experiments import pipeline

    sims, wer = similarities(S, paths, texts, language, references, progress)
    common = {"section": section, "language": language, **fields}
    rows = []
    for label, stage in S.heads.items():
        rows += pipeline.score(S.P, sims[label], protocols=("full",), directions=directions, system=label,
                               kind="clasp", fusion=stage.P.fusion, speech_backbone=stage.P.speech_backbone, **common)
    extra = {"wer": wer} if wer is not None else {}
    rows += pipeline.score(S.P, sims[S.labels[-1]], protocols=("full",), directions=directions,
                           system=S.labels[-1], kind="cascade", **common, **extra)
    return rows


def noise_sweep(S: Systems, paths: Sequence, texts: Sequence[str], kinds=NOISE_KINDS, snrs=SNRS_DB,
                seed: int = 42, talkers: int = BABBLE_TALKERS, progress: bool = False) -> list[dict]:
    """Speech -> text rows for the clean items and each (noise kind, SNR), all on one gallery."""
    bad = [k for k in kinds if k not in NOISE_KINDS]
    if bad:
        raise ParamError(f"unknown noise {choices_hint(bad[0], NOISE_KINDS)}")
    rows = evaluate(S, paths, texts, "noise", directions=("s2t",), references=texts, noise="clean",
                    snr_db=None, progress=progress)
    for kind in kinds:
        for snr in snrs:
            noisy = noisy_versions(paths, kind, snr, seed=seed, talkers=talkers, progress=progress)
            rows += evaluate(S, noisy, texts, "noise", directions=("s2t",), references=texts, noise=kind,
                             snr_db=float(snr), progress=progress)
    return rows


# ------------------------------------------------------------------------------------ unseen voice
def _voices(stage) -> pd.Series:
    return stage.manifest.set_index("id")["voice"]


def _held_out_matcher(held: str):
    """A test on voice names: ``held`` itself, or every voice of one engine written ``<engine>:*`` (the
    unseen-engine test: a whole synthesizer, not only one of its voices, stays out of training)."""
    if held.endswith(":*"):
        return lambda v: v.startswith(held[:-1])
    return lambda v: v == held


def voice_items(stage, split: str, voice: str, keep: bool = True) -> np.ndarray:
    """Indices of ``stage.data[split]`` spoken by ``voice`` (a voice, or ``<engine>:*`` for all of an engine's
    voices), or, with ``keep=False``, by any other."""
    by_id = _voices(stage)
    known = sorted(set(by_id))
    valid = known + sorted({v.split(":", 1)[0] + ":*" for v in known if ":" in v})
    if voice not in valid:
        raise ParamError(f"voice {choices_hint(voice, valid)} (the corpus's voices, or <engine>:* for all of one "
                         "engine's)")
    held = _held_out_matcher(voice)
    is_voice = np.array([held(by_id[i]) for i in stage.data[split].ids], dtype=bool)
    return np.flatnonzero(is_voice if keep else ~is_voice)


def unseen_voice_heads(stage, voice: str, progress: bool = False) -> dict:
    """Label -> Stage3: the head trained on every voice, one trained without ``voice`` (or ``<engine>:*``; train and
    validation), and a control trained on as many training pairs drawn from all voices (same
    validation items as the held-out head), so the drop from the control isolates the unseen voice."""
    from claspkit.experiments import pipeline

    data = stage.data
    val = pipeline.take(data["val"], voice_items(stage, "val", voice, keep=False))
    without = pipeline.take(data["train"], voice_items(stage, "train", voice, keep=False))
    if not len(without) or not len(val):
        raise ParamError(f"holding out {voice} leaves no training or validation items: use a corpus with "
                         "more than one voice")
    slug = voice.replace(":*", "-engine").replace(":", "-")
    base = stage.trained.name
    held = pipeline.fit(stage.P, {"train": without, "val": val, "test": data["test"]}, f"{base}-without-{slug}",
                        progress=progress)
    control_train = pipeline.train_subset(data["train"], len(without), stage.P.seed)
    control = pipeline.fit(stage.P, {"train": control_train, "val": val, "test": data["test"]},
                           f"{base}-control-{len(without)}", progress=progress)
    as_stage = lambda t, d: pipeline.Stage3(stage.P, stage.manifest, d, t, stage.chosen_by)  # noqa: E731
    return {f"trained on all voices ({len(data['train'])} pairs)": stage,
            f"all voices, {len(without)} pairs (control)": as_stage(control, {**data, "train": control_train}),
            f"without {voice} ({len(without)} pairs)": as_stage(held, {**data, "train": without})}


# ------------------------------------------------------------------------------------- real speech
def _sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    from claspkit.experiments.pipeline import sample_indices

    if n is not None and n < 1:
        raise ParamError(f"the number of prompts must be >= 1 or None (all), got {n}")
    return df.iloc[sample_indices(len(df), len(df) if n is None else n, seed)].reset_index(drop=True)


def real_prompts(lang: str = "en", n: int | None = None, seed: int = 42, progress: bool = False) -> pd.DataFrame:
    """Sentence-like, deduplicated Asterisk prompts of ``lang`` (a seeded sample of ``n``, or all)."""
    from claspkit.data.asterisk import load_asterisk, sentence_prompts

    return _sample(sentence_prompts(load_asterisk(lang, progress=progress)), n, seed)


def parallel_set(langs: Sequence[str], n: int | None = None, seed: int = 42, progress: bool = False) -> pd.DataFrame:
    """One row per prompt that is sentence-like in English and every language of ``langs``, with
    ``text_<lang>`` and ``path_<lang>`` columns; each language's texts are distinct (a gallery of
    duplicates would tie with the gold)."""
    from claspkit.data.asterisk import SHORT_WORDS, norm_text, parallel_prompts

    langs = ["en", *[lang for lang in langs if lang != "en"]]
    long = parallel_prompts(langs, min_words=SHORT_WORDS, progress=progress)
    wide = long.pivot(index="prompt", columns="lang", values=["text", "path"])
    wide.columns = [f"{field}_{lang}" for field, lang in wide.columns]
    wide = wide.reset_index().sort_values("prompt", kind="stable")
    for lang in langs:
        wide = wide[~wide[f"text_{lang}"].map(norm_text).duplicated(keep="first")]
    return _sample(wide.reset_index(drop=True), n, seed)


def cross_lingual(S: Systems, wide: pd.DataFrame, langs: Sequence[str], progress: bool = False) -> list[dict]:
    """Real parallel speech in four directions per language L: L speech -> English text, L speech ->
    L text, L text -> English speech, and the English baseline on the same prompts."""
    en_paths, en_texts = list(wide["path_en"]), list(wide["text_en"])
    rows = evaluate(S, en_paths, en_texts, "real parallel", language="en", references=en_texts,
                    task="en speech <-> en text", query_language="en", progress=progress)
    for lang in langs:
        if lang == "en":
            continue
        paths, texts = list(wide[f"path_{lang}"]), list(wide[f"text_{lang}"])
        rows += evaluate(S, paths, en_texts, "real parallel", language=lang, directions=("s2t",),
                         task=f"{lang} speech -> en text", query_language=lang, progress=progress)
        rows += evaluate(S, paths, texts, "real parallel", language=lang, directions=("s2t",), references=texts,
                         task=f"{lang} speech -> {lang} text", query_language=lang, progress=progress)
        rows += evaluate(S, en_paths, texts, "real parallel", language="en", directions=("t2s",),
                         task=f"{lang} text -> en speech", query_language=lang, progress=progress)
    return rows


# --------------------------------------------------------------------------------- long recordings
def long_recordings(prompts: pd.DataFrame, per_file: int = 20, pause_s: float = 1.0, out_dir=None) -> pd.DataFrame:
    """Join the prompts (rows with ``id``, ``text``, ``path``) into files of ``per_file`` prompts with
    ``pause_s`` of silence between them; returns one row per prompt with its ``file`` (relative to
    ``attrs["folder"]``) and its exact ``start_s``/``end_s``. Written once, atomically."""
    from claspkit.data.audio import load_audio
    from claspkit.encoders.features import FeatureCache

    if per_file < 1 or not pause_s >= 0:
        raise ParamError(f"need per_file >= 1 and pause_s >= 0, got {per_file} and {pause_s}")
    if prompts.empty:
        raise ParamError("no prompts to join into long recordings")
    shas = FeatureCache().file_hashes([Path(p) for p in prompts["path"]])
    recipe = {"recipe": LONG_RECIPE, "per_file": int(per_file), "pause_s": float(pause_s), "items": shas}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    folder = _derived_root(out_dir) / "long" / digest
    pause = np.zeros(int(round(pause_s * SAMPLE_RATE)), dtype=np.float32)
    rows = []
    for f, a in enumerate(range(0, len(prompts), per_file)):
        chunk = prompts.iloc[a:a + per_file]
        name = f"recording-{f + 1:02d}.wav"
        parts, t = [pause], len(pause)
        for _, r in chunk.iterrows():
            x = np.asarray(load_audio(r["path"]), dtype=np.float32)
            rows.append({"id": r["id"], "text": r["text"], "file": name, "start_s": t / SAMPLE_RATE,
                         "end_s": (t + len(x)) / SAMPLE_RATE})
            parts += [x, pause]
            t += len(x) + len(pause)
        if not (folder / name).is_file():
            _write_wav(folder / name, np.round(np.concatenate(parts) * 32767 * PEAK).astype(np.int16))
    out = pd.DataFrame(rows)
    out.attrs["folder"] = str(folder)
    return out


def _overlap(a0, a1, b0, b1) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _long_scores(scores: np.ndarray, gold: np.ndarray, spans: np.ndarray, truth: pd.DataFrame,
                 tolerance_s: float) -> dict[str, np.ndarray]:
    """Per query: reciprocal rank of its gold segment (0 when no segment overlaps it), hit@1, and whether
    the top segment is the gold one with both edges within ``tolerance_s`` of the truth."""
    rr, hit, timed = np.zeros(len(gold)), np.zeros(len(gold)), np.zeros(len(gold))
    for q, g in enumerate(gold):
        if g < 0:
            continue
        rank = 1 + int(np.sum(scores[q] > scores[q, g]))
        rr[q], hit[q] = 1.0 / rank, float(rank == 1)
        edges = np.abs(spans[g] - truth[["start_s", "end_s"]].to_numpy()[q])
        timed[q] = float(rank == 1 and np.all(edges <= tolerance_s))
    return {"mrr": rr, "hits@1": hit, f"timestamps within {tolerance_s:g} s": timed}


def long_search(S: Systems, stage, truth: pd.DataFrame, index_dir, tolerance_s: float = 0.5,
                progress: bool = False) -> tuple[list[dict], dict]:
    """Index ``truth.attrs['folder']`` with ``stage``'s checkpoint, search each prompt's text, score the
    hits against the known boundaries; the cascade transcribes the same segments and is scored alike.

    Returns (rows, facts): ``facts`` has the segment count and the share of prompts that some segment
    matches within ``tolerance_s`` at both edges (the segmenter's accuracy, whatever the model)."""
    from claspkit.evaluation import asr, metrics
    from claspkit.encoders.features import extract_text
    from claspkit.search.index import load_index
    from claspkit.search.query import build_index, text_encoder

    folder = Path(truth.attrs["folder"])
    build_index(folder, stage.trained.checkpoint, index_dir, progress=progress)
    idx = load_index(index_dir)
    files = np.array([idx._paths[i] for i in idx.file_of_row])
    spans = np.stack([np.asarray(idx.start_s, dtype=np.float64), np.asarray(idx.end_s, dtype=np.float64)], axis=1)
    gold = np.full(len(truth), -1)
    found = np.zeros(len(truth))
    for q, r in enumerate(truth.itertuples()):
        ov = np.array([_overlap(s0, s1, r.start_s, r.end_s) if f == r.file else 0.0
                       for f, (s0, s1) in zip(files, spans)])
        if ov.max(initial=0) > 0:
            gold[q] = int(np.argmax(ov))
        found[q] = float(np.any((files == r.file) & (np.abs(spans[:, 0] - r.start_s) <= tolerance_s)
                                & (np.abs(spans[:, 1] - r.end_s) <= tolerance_s)))
    texts = list(truth["text"])
    q_clasp = np.asarray(text_encoder(idx).encode(texts), dtype=np.float32)
    systems = {f"CLASP {stage.P.fusion} (index)": np.asarray(idx.vectors, dtype=np.float32) @ q_clasp.T}
    from claspkit.data.audio import load_audio

    audio = {f: load_audio(folder / f) for f in sorted(set(files))}
    waves = [audio[f][int(round(s0 * SAMPLE_RATE)):int(round(s1 * SAMPLE_RATE))] for f, (s0, s1) in zip(files, spans)]
    transcripts = [t.strip() for a in range(0, len(waves), 8)
                   for t in S.asr.transcribe(waves[a:a + 8], language="en")]
    seg = asr.embed_transcripts(S.text_encoder, transcripts, progress=False)
    q_text = np.asarray(extract_text(S.text_encoder, texts, progress=False), dtype=np.float32)
    systems[f"ASR cascade ({S.asr_name}, same segments)"] = seg @ q_text.T
    rows = []
    for system, seg_by_query in systems.items():
        per_query = _long_scores(seg_by_query.T, gold, spans, truth, tolerance_s)
        row = {"section": "long recordings", "system": system, "kind": "cascade" if "cascade" in system else "clasp",
               "direction": "text->speech", "protocol": "full", "n": len(truth), "segments": len(idx)}
        for m, vals in per_query.items():
            row[m] = float(vals.mean())
            row[f"{m}_ci"] = list(metrics.bootstrap_ci(vals, n=S.P.bootstrap, seed=S.P.seed))
        rows.append(row)
    facts = {"files": len(audio), "prompts": len(truth), "segments": len(idx),
             "audio_s": round(float(sum(len(a) for a in audio.values()) / SAMPLE_RATE), 1),
             f"prompts with a segment within {tolerance_s:g} s": float(found.mean())}
    return rows, facts


# ------------------------------------------------------------------------------------------ tables
def summary_table(rows: list[dict], conditions=("task", "noise", "snr_db"), digits: int = 3) -> pd.DataFrame:
    """One line per (section, condition, direction, system): n, HITS@1 and MRR as ``value [lo, hi]``,
    any extra per-query rate a section reports (long recordings' timestamps), and the cascade's WER."""
    from claspkit.evaluation.metrics import CI_METRICS

    df = pd.DataFrame(rows)
    keys = ["section", *[c for c in conditions if c in df and df[c].notna().any()], "direction", "system"]
    extra = [c[:-3] for c in df.columns if c.endswith("_ci") and c[:-3] not in CI_METRICS]
    shown = ["hits@1", "mrr", *extra]
    out = []
    for r in df.to_dict("records"):
        rec = {k: ("clean" if k == "snr_db" and pd.isna(r.get(k)) else r.get(k)) for k in keys}
        rec["n"] = int(r["n"])
        for m in shown:
            if isinstance(r.get(f"{m}_ci"), (list, tuple)):
                lo, hi = r[f"{m}_ci"]
                rec[m] = f"{r[m]:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
        if pd.notna(r.get("wer", np.nan)):
            rec["WER"] = f"{r['wer']:.3f}"
        out.append(rec)
    table = pd.DataFrame(out).set_index(keys)
    return table[[c for c in ("n", *shown, "WER") if c in table]]
