"""Build the speech-text corpus (notebook 01): Brown -> clean -> sample -> voices -> audio -> manifest.

``build_corpus(P)`` is idempotent: the manifest records a fingerprint of everything that
decides its content, so a second call with the same parameters only checks that the audio
is still there and returns. Audio is content-addressed under ``data_dir()/audio``, so the
tiny, small and full presets share every sentence they have in common (the sample is
nested: a smaller preset takes the first sentences of each category's seeded ranking).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from claspkit.data.brown import clean, load_brown
from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.data.importers import import_common_voice, import_fleurs
from claspkit.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from claspkit.paths import atomic_write_text, data_dir, display_path, run_dir
from claspkit.data.spoken import spoken_form
from claspkit.data.splits import SPLITS, apportion, straddling_twins, stratified_split
from claspkit.data.tts import (SAMPLE_RATE, assign_voices, audio_relpath, check_voice, get_synthesizer, parse_voice,
                               synthesize_corpus)

__all__ = [
    "CORPUS_VERSION", "MANIFEST_NAME", "REPORT_NAME", "TOKEN_RE", "manifest_path", "report_path",
    "sample_sentences", "assign_splits", "build_corpus", "load_report", "load_manifest", "audio_path", "tokens",
    "corpus_summary", "category_counts",
]

# Bump when cleaning, sampling or manifest construction changes, so old manifests are rebuilt.
CORPUS_VERSION = "1"
MANIFEST_NAME = "manifest.csv"
REPORT_NAME = "corpus_report.json"
# Words (with inner apostrophes, hyphens, dots: "don't", "term-end", "6.4") and single
# punctuation marks: close to Brown's own tokens, and applicable to imported corpora alike.
TOKEN_RE = re.compile(r"\w+(?:[-'’.,:/]\w+)*|[^\w\s]")


def manifest_path(P) -> Path:
    return run_dir(P.preset) / MANIFEST_NAME


def report_path(P) -> Path:
    return run_dir(P.preset) / REPORT_NAME


def sample_sentences(sentences, n, seed: int = 42) -> list:
    """``n`` sentences with every category in proportion (all of them when ``n`` is None).

    Category quotas are apportioned by largest remainder; within a category the sentences
    with the smallest ``sha1(seed, id)`` are taken, so a smaller ``n`` gives (almost always)
    a subset of a larger one. Returned in corpus order.
    """
    sentences = list(sentences)
    if n is None or n >= len(sentences):
        return sentences
    if n <= 0:
        raise ParamError(f"n_sentences must be a positive number or None (all), got {n}")
    by_cat: dict[str, list] = {}
    for s in sentences:
        by_cat.setdefault(s.category, []).append(s)
    cats = sorted(by_cat)
    quotas = apportion(n, [len(by_cat[c]) for c in cats])
    chosen = set()
    for c, q in zip(cats, quotas):
        ranked = sorted(by_cat[c], key=lambda s: hashlib.sha1(f"{seed}\0{s.id}".encode()).hexdigest())
        chosen.update(s.id for s in ranked[:q])
    return [s for s in sentences if s.id in chosen]


def assign_splits(P, kept, ids, categories) -> dict:
    """``{id: split}``: stratified by ``P.split``, or, with ``P.eval_from``, that preset's val/test kept as they are.

    A nested preset that draws its splits afresh scores on a different gallery than the one it grew from, so its
    numbers cannot be set beside the smaller run's. With ``eval_from`` the smaller preset's held-out sentences stay
    held out (same ids, same splits: its cached cascade transcripts apply) and every new sentence trains.

    Sentences spoken alike (one ``spoken_form``: ``What is it"?`` and ``"What is it"?``) are never in different
    splits: where they straddle, the ones outside the most held-out split are left out of the dict (dropped from
    the corpus, ``straddling_twins``), so the galleries stay and a sample without such twins is split as before.
    """
    split_of = _draw_splits(P, kept, ids, categories)
    text_of = {s.id: s.text for s in kept}
    leaks = set(straddling_twins(ids, [spoken_form(text_of[i]) for i in ids], split_of))
    return {i: split_of[i] for i in ids if i not in leaks}


def _draw_splits(P, kept, ids, categories) -> dict:
    if P.get("eval_from") is None:
        return stratified_split(ids, categories, P.split, P.seed)
    from claspkit.config import load_params

    base = load_params(P.eval_from)
    for key in ("seed", "max_tokens", "brown_dir", "voices"):
        if base[key] != P[key]:
            raise ParamError(f"eval_from {P.eval_from!r}: its {key} is {base[key]!r} but this run's is {P[key]!r}; "
                             "the two samples would not nest, so set them equal")
    base_sample = sample_sentences(kept, base.n_sentences, base.seed)
    base_split = stratified_split([s.id for s in base_sample], [s.category for s in base_sample], base.split,
                                  base.seed)
    held = {i: sp for i, sp in base_split.items() if sp != "train"}
    missing = sorted(set(held) - set(ids))
    if missing:
        raise ParamError(f"eval_from {P.eval_from!r}: {len(missing):,} of its held-out sentences are not in this "
                         f"sample (e.g. {missing[0]}); n_sentences ({P.n_sentences}) must be at least "
                         f"{P.eval_from}'s ({base.n_sentences})")
    return {i: held.get(i, "train") for i in ids}


def _fingerprint(P) -> str:
    """Everything that decides the manifest's content (not worker counts or progress bars)."""
    voices = sorted(dict.fromkeys(P.voices))
    tags = {v: get_synthesizer(parse_voice(v).engine).cache_tag(parse_voice(v)) for v in voices}
    imports = {}
    for key in ("common_voice_dir", "fleurs_dir"):
        folder = P.get(key)
        if folder:
            stats = []
            for name in ("train.tsv", "dev.tsv", "test.tsv"):
                f = Path(folder).expanduser() / name
                stats.append([name, f.stat().st_size, f.stat().st_mtime_ns] if f.is_file() else [name, None, None])
            imports[key] = [str(Path(folder).expanduser().resolve()), stats]
    blob = {
        "version": CORPUS_VERSION, "n_sentences": P.n_sentences, "max_tokens": P.max_tokens, "seed": P.seed,
        "split": list(P.split), "voices": tags, "brown_dir": str(P.brown_dir or ""), "imports": imports,
        "data_dir": str(data_dir()),
    }
    if P.get("eval_from") is not None:  # only when set, so manifests built before the knob stay valid
        blob["eval_from"] = _eval_from_tag(P)
    return hashlib.sha1(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _eval_from_tag(P):
    """What of the ``eval_from`` preset decides this manifest."""
    from claspkit.config import load_params

    base = load_params(P.eval_from)
    return [P.eval_from, base.n_sentences, list(base.split)]


def _reusable(P, fingerprint: str):
    mp, rp = manifest_path(P), report_path(P)
    if not (mp.is_file() and rp.is_file()):
        return None
    try:
        report = json.loads(rp.read_text())
    except (OSError, ValueError):
        return None
    if report.get("fingerprint") != fingerprint:
        return None
    try:
        df = read_manifest(mp)
    except ClaspkitError:  # damaged by hand or by another tool: rebuild it
        return None
    if not all(audio_path(p).is_file() for p in df["path"]):
        return None
    brown = df[df["source"] == "brown"]
    if straddling_twins(brown["id"], brown["text"].map(spoken_form), dict(zip(brown["id"], brown["split"]))):
        return None  # built before spoken twins were kept in one split: the rule changes exactly such manifests
    return df, report


def build_corpus(P, progress: bool = True, verbose: bool = True) -> pd.DataFrame:
    """Build (or reuse) the corpus for parameters ``P``; write the manifest and a drop report.

    Writes ``run_dir(P.preset)/manifest.csv`` and ``corpus_report.json`` (cleaning counts by
    reason, sampling, synthesis statistics). Returns the manifest; ``df.attrs['report']``
    holds the report. Voices and engines are checked before any work starts.
    """
    for v in P.voices:
        check_voice(v)
    fingerprint = _fingerprint(P)
    again = _reusable(P, fingerprint)
    if again is not None:
        df, report = again
        if verbose:
            print(f"reusing the corpus in {display_path(manifest_path(P))} (same parameters, all audio present)")
            _print_report(report, reused=True)
        df.attrs["report"] = report
        return df

    sentences = load_brown(P.brown_dir)
    kept, cleaning = clean(sentences, max_tokens=P.max_tokens)
    chosen = sample_sentences(kept, P.n_sentences, P.seed)
    sampled = len(chosen)
    split_of = assign_splits(P, kept, [s.id for s in chosen], [s.category for s in chosen])
    twins = [s.id for s in chosen if s.id not in split_of]
    chosen = [s for s in chosen if s.id in split_of]
    ids = [s.id for s in chosen]
    voices = assign_voices(ids, P.voices, P.seed)
    brown = pd.DataFrame({
        "id": ids, "source": "brown", "text": [s.text for s in chosen],
        "category": [s.category for s in chosen], "voice": voices,
        "path": [audio_relpath(s.text, v) for s, v in zip(chosen, voices)],
        "duration_s": 0.0, "sample_rate": SAMPLE_RATE,
    })
    brown["split"] = [split_of[i] for i in ids]
    durations = synthesize_corpus(brown, workers=P.tts_workers, progress=progress)
    brown["duration_s"] = list(durations)

    parts, imported = [brown], {}
    if P.get("common_voice_dir"):
        parts.append(import_common_voice(P.common_voice_dir, progress=progress))
        imported["common_voice"] = len(parts[-1])
    if P.get("fleurs_dir"):
        parts.append(import_fleurs(P.fleurs_dir, progress=progress))
        imported["fleurs"] = len(parts[-1])
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else brown
    df = df.loc[:, list(MANIFEST_COLUMNS)]
    write_manifest(df, manifest_path(P))

    report = {
        "fingerprint": fingerprint,
        "preset": P.preset,
        "cleaning": cleaning.as_dict(),
        "sampled": sampled,
        "twins_dropped": twins,
        "categories": dict(sorted(Counter(s.category for s in chosen).items())),
        "voices": dict(sorted(Counter(voices).items())),
        "synthesis": {
            "files": len(brown), "reused": durations.n_reused, "synthesized": durations.n_synthesized,
            "stale_temp_removed": durations.n_stale_removed, "elapsed_s": round(durations.elapsed_s, 2),
            "synthesized_audio_s": round(durations.synthesized_audio_s, 2),
            "realtime_factor": round(durations.realtime_factor, 1),
        },
        "imported": imported,
        "splits": {s: int((df["split"] == s).sum()) for s in SPLITS},
    }
    atomic_write_text(report_path(P), json.dumps(report, indent=2) + "\n")
    if verbose:
        _print_report(report)
    df = read_manifest(manifest_path(P))
    df.attrs["report"] = report
    return df


def _print_report(report: dict, reused: bool = False) -> None:
    c = report["cleaning"]
    drops = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in c["dropped"].items() if v)
    print(f"Brown: {c['read']:,} sentences read, {c['kept']:,} kept, {c['dropped_total']:,} dropped"
          + (f" ({drops})" if drops else ""))
    print(f"sampled {report['sampled']:,} sentences from {len(report['categories'])} categories, "
          f"{len(report['voices'])} voices")
    if report.get("twins_dropped"):
        print(f"dropped {len(report['twins_dropped']):,} sentences spoken like one in a more held-out split "
              "(same words, other punctuation or case)")
    s = report["synthesis"]
    if reused:  # the stored counts describe the build that made the corpus, not this call
        print(f"audio: {s['files']:,} files, all present")
    else:
        print(f"audio: {s['files']:,} files ({s['reused']:,} reused, {s['synthesized']:,} synthesized)")
    for source, n in report.get("imported", {}).items():
        print(f"imported {n:,} {source} clips with their official splits")
    print("splits: " + ", ".join(f"{k} {v:,}" for k, v in report["splits"].items()))


def load_report(P) -> dict:
    """The cleaning/synthesis report written next to the manifest."""
    rp = report_path(P)
    if not rp.is_file():
        raise DataMissingError(f"no corpus report at {display_path(rp)}: run notebooks/01_data.ipynb "
                               "(or claspkit.data.corpus.build_corpus(P)) first.")
    return json.loads(rp.read_text())


def load_manifest(P) -> pd.DataFrame:
    """The manifest of preset ``P.preset`` (DataMissingError telling how to build it)."""
    mp = manifest_path(P)
    if not mp.is_file():
        raise DataMissingError(
            f"no corpus for preset {P.preset!r} ({display_path(mp)} is missing): run notebooks/01_data.ipynb "
            f"with this preset, or claspkit.data.corpus.build_corpus(P), first."
        )
    return read_manifest(mp)


def audio_path(path_or_row) -> Path:
    """The audio file of a manifest row (or its ``path`` value): relative paths live in ``data_dir()``."""
    p = path_or_row if isinstance(path_or_row, (str, os.PathLike)) else path_or_row["path"]
    p = Path(p)
    return p if p.is_absolute() else data_dir() / p


def tokens(text: str) -> list[str]:
    """The word/punctuation tokens ``corpus_summary`` counts."""
    return TOKEN_RE.findall(str(text))


def corpus_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    """Table-1 style statistics per source (plus a total row when there are several sources).

    Unique tokens are counted case-insensitively over ``tokens(text)``.
    """
    rows = []
    groups = [(s, g) for s, g in manifest.groupby("source", sort=True)]
    if len(groups) > 1:
        groups.append(("total", manifest))
    for source, g in groups:
        toks = [tokens(t) for t in g["text"]]
        vocab = {w.lower() for ts in toks for w in ts}
        rows.append({
            "source": source,
            "sentences": len(g),
            "unique_tokens": len(vocab),
            "avg_tokens_per_sentence": round(sum(map(len, toks)) / max(len(g), 1), 2),
            "hours": round(float(g["duration_s"].sum()) / 3600, 3),
            **{s: int((g["split"] == s).sum()) for s in SPLITS},
        })
    return pd.DataFrame(rows).set_index("source")


def category_counts(manifest: pd.DataFrame, source: str = "brown") -> pd.DataFrame:
    """Sentences per category of one source, largest first (the paper's Figure 4)."""
    sub = manifest[manifest["source"] == source]
    counts = sub["category"].value_counts()
    out = pd.DataFrame({"category": counts.index.astype(str), "sentences": counts.values.astype(int)})
    return out.sort_values(["sentences", "category"], ascending=[False, True]).reset_index(drop=True)
