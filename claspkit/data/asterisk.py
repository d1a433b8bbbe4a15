"""Real recorded speech with human transcripts: the Asterisk telephone prompts, as a parallel set.

Debian's ``asterisk-core-sounds-{en,fr,es,it,ru}`` 1.6.1-1 hold about 500-600 professionally
recorded prompts per language, one voice per language, under the *same prompt names* in every
language (``vm-intro`` is the voicemail greeting in all five), so they are real parallel speech.
The base package carries the transcript (``name: text`` lines), the ``-g722`` package 16 kHz G.722
audio. Both are fetched with ``claspkit.data.debdata`` (no apt, dpkg or root), and each prompt is
decoded once with PyAV's FFmpeg into a 16 kHz mono PCM16 wav cached under
``data/audio/asterisk/<lang>-<package sha>-av<PyAV version>/`` (written atomically).

Rules (why each exists):

- **Annotations.** ``[...]`` and ``(...)`` spans are notes, not speech ("[ascending tones]",
  "(10 seconds of silence)", "IAX (note: does not say "2")"), and in a few lines an optional word
  whose presence in the audio is unknown. They are removed from ``text`` (``raw_text`` keeps the
  line) and the row is flagged ``annotated``, so the sentence set never pairs audio with a text
  that may not match it. Non-speech prompts (tones, silence) stay, with an empty ``text``.
- **Words.** ``n_words`` counts whitespace tokens holding a letter or digit ("press * to" is two);
  ``short`` is fewer than ``SHORT_WORDS`` (4) words: digits, letters and one-word prompts.
- **Matching.** A transcript name matches the audio file of the same relative path; failing that,
  the one unmatched file whose name differs only in case (upstream typos such as ``letters/O``
  vs ``letters/o``). What is left out (transcript lines without audio, audio without a transcript,
  0-byte audio, blank transcripts, repeated names) is listed in ``df.attrs["asterisk_report"]``
  and counted in an ``UnmatchedPromptWarning``: reported, never silently dropped.
- **Deduplication** (``sentence_prompts``): texts equal after ``norm_text`` (NFKC, casefold,
  punctuation to spaces, whitespace collapsed) are one text; the first in prompt-name order is kept.

Licences (the packages' ``copyright`` file): en, es (Allison Smith) and fr (June Wallack)
CC-BY-SA-3.0; it (Carlo Flora) and ru (ivrvoice.ru, provided by Maxim Topal) CC-BY-3.0.
Rows are manifest-compatible (``claspkit.data.manifest``) with ``split`` "test": this is an evaluation
set for robustness, not training data.
"""
from __future__ import annotations

import gzip
import re
import unicodedata
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from claspkit.constants import SAMPLE_RATE
from claspkit.data.debdata import PINNED, fetch_deb
from claspkit.errors import AudioError, DataMissingError, ParamError, choices_hint
from claspkit.paths import atomic_path, data_dir, display_path

__all__ = [
    "SHORT_WORDS", "ANNOTATION", "Voice", "VOICES", "COLUMNS", "UnmatchedPromptWarning", "norm_text",
    "strip_annotations", "count_words", "parse_transcript", "decode_g722", "cache_folder", "load_asterisk",
    "sentence_prompts", "parallel_prompts",
]

SHORT_WORDS = 4
ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)")


class Voice(NamedTuple):
    folder: str      # the voice folder under usr/share/asterisk/sounds/
    speaker: str
    gender: str
    locale: str
    license: str


VOICES = {
    "en": Voice("en_US_f_Allison", "Allison Smith", "female", "en-US", "CC-BY-SA-3.0"),
    "es": Voice("es_MX_f_Allison", "Allison Smith", "female", "es-MX", "CC-BY-SA-3.0"),
    "fr": Voice("fr_CA_f_June", "June Wallack", "female", "fr-CA", "CC-BY-SA-3.0"),
    "it": Voice("it_IT_m_Carlo", "Carlo Flora", "male", "it-IT", "CC-BY-3.0"),
    "ru": Voice("ru_RU_f_IvrvoiceRU", "IvrvoiceRU", "female", "ru-RU", "CC-BY-3.0"),
}

COLUMNS = ("id", "prompt", "lang", "text", "raw_text", "annotated", "n_words", "short", "duration", "path",
           "speaker", "gender", "locale", "voice", "source", "package", "license", "category", "split",
           "duration_s", "sample_rate")


class UnmatchedPromptWarning(UserWarning):
    """Transcript lines without audio, or audio without a transcript, in an Asterisk package."""


def norm_text(text: str) -> str:
    """The deduplication key: NFKC, casefolded, punctuation as spaces, whitespace collapsed."""
    s = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]|_", " ", s).split())


def strip_annotations(raw: str) -> tuple[str, bool]:
    """(text without ``[...]``/``(...)`` notes, whether there were any)."""
    return " ".join(ANNOTATION.sub(" ", raw).split()), bool(ANNOTATION.search(raw))


def count_words(text: str) -> int:
    return sum(1 for tok in text.split() if re.search(r"\w", tok))


def parse_transcript(lines) -> tuple[dict[str, str], dict[str, list]]:
    """``{name: raw text}`` from ``name: text`` lines (``;`` comments), plus what was left out and why.

    A blank text is no transcript; a repeated name keeps its first line; a text that repeats its
    own ``name:`` (one ru line does) loses the copy.
    """
    entries, dups, bad, blank = {}, [], [], []
    for line in lines:
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith(";"):
            continue
        name, sep, raw = line.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            bad.append(line)
        elif name in entries or name in blank:
            dups.append(f"{name}: {raw.strip()}")
        elif not raw.strip():
            blank.append(name)
        else:
            raw = raw.strip()
            entries[name] = raw[len(name) + 1:].strip() if raw.startswith(f"{name}:") else raw
    return entries, {"blank_transcript": blank, "duplicate_names": dups, "unparsed_lines": bad}


def _match(entries: dict[str, str], audio: dict[str, Path]):
    """[(transcript name, prompt name = audio name)], plus the report of what did not match."""
    pairs = [(n, n) for n in entries if n in audio]
    left = sorted(set(audio) - set(entries))
    by_case: dict[str, list[str]] = {}
    for a in left:
        by_case.setdefault(a.casefold(), []).append(a)
    no_audio, fixed = [], []
    for n in entries:
        if n in audio:
            continue
        cands = by_case.get(n.casefold(), [])
        if len(cands) == 1:
            pairs.append((n, cands.pop()))
            fixed.append(f"{n} -> {pairs[-1][1]}")
        else:
            no_audio.append(n)
    used = {p for _, p in pairs}
    report = {"matched_ignoring_case": fixed, "transcript_without_audio": sorted(no_audio),
              "audio_without_transcript": sorted(set(audio) - used)}
    return sorted(pairs, key=lambda p: p[1]), report


def decode_g722(src, dst) -> int:
    """Decode a raw G.722 file into a 16 kHz mono PCM16 wav at ``dst`` (atomically); the sample count."""
    import av
    import soundfile as sf

    chunks = []
    try:
        with av.open(str(src), format="g722") as container:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                if frame.format.name != "s16" or frame.sample_rate != SAMPLE_RATE or len(frame.layout.channels) != 1:
                    raise AudioError(f"decoder gave {frame.format.name} {frame.sample_rate} Hz "
                                     f"{len(frame.layout.channels)} ch, expected s16 16000 Hz mono")
                chunks.append(frame.to_ndarray().reshape(-1))
    except av.FFmpegError as e:
        raise AudioError(f"cannot decode {display_path(Path(src))} as G.722 ({e}): the file is corrupt; delete "
                         "its unpacked package folder (under data/raw/debian) to fetch it again") from e
    except AudioError as e:
        raise AudioError(f"{display_path(Path(src))}: {e}; check the PyAV installation (`pip install av`)") from e
    x = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if x.size == 0:
        raise AudioError(f"{display_path(Path(src))} decodes to no samples: the file is empty or not G.722")
    with atomic_path(dst, suffix=".wav") as tmp:
        sf.write(str(tmp), x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return int(x.size)


def _check_lang(lang: str) -> Voice:
    if lang not in VOICES:
        raise ParamError(f"unknown Asterisk prompt language: {choices_hint(lang, VOICES)}")
    return VOICES[lang]


def cache_folder(lang: str, cache_dir=None) -> Path:
    """Where ``lang``'s decoded wavs live, keyed by the audio package's sha256 and the PyAV (FFmpeg) build."""
    import av

    sha = PINNED[f"asterisk-core-sounds-{lang}-g722"][2]
    return Path(cache_dir or data_dir() / "audio" / "asterisk") / f"{lang}-{sha[:12]}-av{av.__version__}"


def load_asterisk(lang: str, *, dest_dir=None, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per prompt of ``lang`` with both a transcript and audio (columns: ``COLUMNS``).

    Fetches the two pinned packages into ``dest_dir`` (default ``data/raw/debian``) on first use
    and decodes the audio once into ``cache_dir``. ``df.attrs["asterisk_report"]`` counts what
    could not be matched (see the module docstring).
    """
    import soundfile as sf

    from claspkit.progress import progress_bar

    voice = _check_lang(lang)
    audio_pkg = f"asterisk-core-sounds-{lang}-g722"
    base, audio_dir = fetch_deb(f"asterisk-core-sounds-{lang}", dest_dir), fetch_deb(audio_pkg, dest_dir)
    transcript = base / "usr" / "share" / "doc" / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
    sounds = audio_dir / "usr" / "share" / "asterisk" / "sounds" / voice.folder
    for need, folder in ((transcript, base), (sounds, audio_dir)):
        if not need.exists():
            raise DataMissingError(f"{display_path(need)} is missing from the unpacked package: delete "
                                   f"{display_path(folder)} to unpack it again, or check the pin in "
                                   "claspkit.data.debdata")
    with gzip.open(transcript, "rt", encoding="utf-8-sig") as fh:
        entries, report = parse_transcript(fh)
    audio = {p.relative_to(sounds).with_suffix("").as_posix(): p for p in sounds.rglob("*.g722") if p.is_file()}
    pairs, unmatched = _match(entries, audio)
    empty = [p for _, p in pairs if audio[p].stat().st_size == 0]  # ru ships a 0-byte `is`
    pairs = [(n, p) for n, p in pairs if audio[p].stat().st_size > 0]
    report = {"transcript_entries": len(entries), "audio_files": len(audio), "matched": len(pairs),
              **unmatched, "empty_audio": empty, **report}

    out_dir = cache_folder(lang, cache_dir)
    todo = [p for _, p in pairs if not (out_dir / f"{p}.wav").is_file()]
    frames = {p: decode_g722(audio[p], out_dir / f"{p}.wav")
              for p in progress_bar(todo, desc=f"decoding Asterisk {lang} G.722", unit="file",
                                    disable=not progress or not todo)}
    package = Path(PINNED[audio_pkg][0]).stem
    records = []
    for name, prompt in pairs:
        wav = out_dir / f"{prompt}.wav"
        n = frames[prompt] if prompt in frames else sf.info(str(wav)).frames
        text, annotated = strip_annotations(entries[name])
        n_words = count_words(text)
        records.append({
            "id": f"asterisk-{lang}-{prompt}", "prompt": prompt, "lang": lang, "text": text,
            "raw_text": entries[name], "annotated": annotated, "n_words": n_words, "short": n_words < SHORT_WORDS,
            "duration": n / SAMPLE_RATE, "path": str(wav.resolve()), "speaker": voice.speaker,
            "gender": voice.gender, "locale": voice.locale, "voice": f"asterisk:{voice.folder}",
            "source": "asterisk", "package": package, "license": voice.license, "category": "asterisk",
            "split": "test", "duration_s": n / SAMPLE_RATE, "sample_rate": SAMPLE_RATE,
        })
    df = pd.DataFrame(records, columns=list(COLUMNS))
    df.attrs["asterisk_report"] = report
    lost = {k: report[k] for k in ("transcript_without_audio", "audio_without_transcript", "empty_audio",
                                   "blank_transcript", "duplicate_names", "unparsed_lines") if report[k]}
    if lost:
        warnings.warn(f"Asterisk {lang}: {len(pairs)} prompts kept; not used: "
                      + "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {v[0]!r})" for k, v in lost.items())
                      + ". The full lists are in df.attrs['asterisk_report'].", UnmatchedPromptWarning, stacklevel=2)
    return df


def sentence_prompts(df: pd.DataFrame, min_words: int = SHORT_WORDS) -> pd.DataFrame:
    """The sentence-like prompts: ``min_words``+ words, not annotated, one row per distinct text.

    Texts are compared by ``norm_text`` within each language; the first row (in ``df``'s order,
    prompt-name order for ``load_asterisk``) is kept. Adds the ``norm_text`` column.
    """
    out = df[(df["n_words"] >= min_words) & ~df["annotated"].astype(bool)].copy()
    out["norm_text"] = out["text"].map(norm_text)
    keys = ["lang", "norm_text"] if "lang" in out.columns else ["norm_text"]
    return out.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)


def parallel_prompts(langs=tuple(VOICES), *, min_words: int | None = None, **load_kw) -> pd.DataFrame:
    """The prompts present in every language of ``langs``, as long rows aligned by prompt name.

    Rows are sorted by prompt, then in ``langs`` order, so ``out[out.lang == a]`` and
    ``out[out.lang == b]`` line up row by row; ``out.pivot(index="prompt", columns="lang",
    values="text")`` gives the wide table. With ``min_words``, a prompt is kept only if it is
    sentence-like (that many words, not annotated) in every language. ``load_kw`` goes to
    ``load_asterisk``.
    """
    langs = list(langs)
    if not langs or len(set(langs)) != len(langs):
        raise ParamError(f"langs must be distinct languages from {sorted(VOICES)}, got {langs!r}")
    frames = []
    for lang in langs:
        _check_lang(lang)
        df = load_asterisk(lang, **load_kw)
        if min_words is not None:
            df = df[(df["n_words"] >= min_words) & ~df["annotated"]]
        frames.append(df)
    common = set.intersection(*(set(df["prompt"]) for df in frames))
    out = pd.concat([df[df["prompt"].isin(common)] for df in frames], ignore_index=True)
    order = {lang: i for i, lang in enumerate(langs)}
    out = out.sort_values(["prompt", "lang"], key=lambda s: s.map(order) if s.name == "lang" else s)
    return out.reset_index(drop=True)

