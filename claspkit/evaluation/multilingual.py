"""Stage 4: text queries in other languages against English speech, and the parallel text they need.

The paper machine-translated its English test transcripts into fa, de, fr and zh with SMALL-100 and
queried the English speech with the translations (text -> speech). Two sources of queries here:

* ``translation_source='udhr'`` (offline, the default): human translations of the Universal
  Declaration of Human Rights, aligned by article (:mod:`claspkit.data.udhr`); the English paragraphs
  are synthesized into the speech gallery and each language's paragraph is its query.
* ``translation_source='hub'``: a translation model by hub id or local folder translates the
  English test transcripts, as the paper did (needs a network the first time).

Plus a sanity table for the frozen text encoder (is a translation closer to its English original
than to unrelated English?) and speech synthesized *in* those languages for the reverse direction.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from claspkit.errors import BackboneError, ParamError, choices_hint
from claspkit.paths import atomic_write_text, data_dir

__all__ = [
    "ESPEAK_VOICES", "WORKING_MODEL", "translation_sanity", "target_spec", "translate_hub",
    "build_multilingual_queries", "speech_voice", "synthesize_parallel_speech",
]

# our code -> candidate codes in each model family's vocabulary
_NLLB = {"en": "eng_Latn", "fa": "pes_Arab", "de": "deu_Latn", "fr": "fra_Latn", "zh": "zho_Hans"}
_MARIAN = {"en": ("eng", "en"), "fa": ("pes", "fas", "fa"), "de": ("deu", "de"), "fr": ("fra", "fr"),
           "zh": ("cmn_Hans", "zho_Hans", "zho", "cmn", "zh")}
# espeak-ng voices that speak each language (the corpus uses 'espeak:<voice>' names)
ESPEAK_VOICES = {"en": "en-us", "fa": "fa", "de": "de", "fr": "fr", "zh": "cmn"}
WORKING_MODEL = "facebook/m2m100_418M"  # SMALL-100's M2M-100 teacher: same architecture and language codes


# ------------------------------------------------------------------------------------ sanity check
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norm == 0):
        raise BackboneError("the text encoder returned NaN or all-zero embeddings: the backbone is broken")
    return x / norm


def translation_sanity(text_encoder, parallel_df: pd.DataFrame, langs: Sequence[str],
                       english: str = "en") -> pd.DataFrame:
    """Per language: does the frozen text encoder put a translation next to its English original?

    For n aligned items, the cosine matrix S (translation i vs English j) gives
    ``cos_translation`` = mean of S[i, i], ``cos_unrelated`` = mean of S[i, j != i], their
    ``margin``, and ``top1`` = share of translations whose nearest English item is their original
    (chance is 1/n). A multilingual encoder fit for Stage 4 has a wide margin and top1 near 1.
    """
    langs = [lang for lang in langs if lang != english]
    missing = [c for c in (english, *langs) if c not in parallel_df.columns]
    if missing:
        raise ParamError(f"parallel_df has no column(s) {missing}: build it with "
                         "claspkit.data.udhr.parallel_articles(['en', *langs]) or build_multilingual_queries")
    n = len(parallel_df)
    if n < 2:
        raise ParamError(f"translation_sanity needs at least 2 aligned items (got {n}) to compare with unrelated ones")
    en = _unit(text_encoder.encode(parallel_df[english].astype(str).tolist()))
    off = ~np.eye(n, dtype=bool)
    rows = []
    for lang in langs:
        s = _unit(text_encoder.encode(parallel_df[lang].astype(str).tolist())) @ en.T
        diag, other = float(np.mean(np.diag(s))), float(np.mean(s[off]))
        rows.append({"lang": lang, "n": n, "cos_translation": diag, "cos_unrelated": other,
                     "margin": diag - other, "top1": float(np.mean(np.argmax(s, axis=1) == np.arange(n))),
                     "chance": 1 / n})
    return pd.DataFrame(rows, columns=["lang", "n", "cos_translation", "cos_unrelated", "margin", "top1", "chance"])


# ------------------------------------------------------------------------------------ hub translation
def _is_small100(model_id: str) -> bool:
    if "small100" in str(model_id).lower().replace("-", "").replace("_", ""):
        return True
    cfg = Path(str(model_id)) / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text()).get("tokenizer_class") == "SMALL100Tokenizer"
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    return False


def _small100_error(model_id: str) -> BackboneError:
    return BackboneError(
        f"{model_id!r} is SMALL-100, whose tokenizer (SMALL100Tokenizer, in the model repo's "
        "tokenization_small100.py) is not part of transformers and is not registered for auto-loading, so "
        "it cannot be loaded by id (its card says to download that file and import it by hand). Use "
        f"translation_model='{WORKING_MODEL}' (SMALL-100's M2M-100 teacher, same language codes) or "
        "'facebook/nllb-200-distilled-600M'; offline, translation_source='udhr' uses human translations.")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so an offline machine fails in seconds, not after retries."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
    except Exception:  # noqa: BLE001 - any problem here just means: try the default endpoint
        endpoint = urlparse("https://huggingface.co")
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@functools.lru_cache(maxsize=2)
def _load_translator(model_id: str, local_files_only: bool):
    """(tokenizer, model) by hub id or local folder; every way it can fail becomes one clear error.

    With no route to the hub, only the local Hugging Face cache is tried (no slow retries).
    """
    if _is_small100(model_id):
        raise _small100_error(model_id)
    if not local_files_only and not Path(model_id).exists() and not _hub_reachable():
        local_files_only = True
    try:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_id, local_files_only=local_files_only)
        model = AutoModelForSeq2SeqLM.from_pretrained(model_id, local_files_only=local_files_only)
    except ImportError as e:
        raise BackboneError(f"translation model {model_id!r} needs a package that is not installed ({e}); "
                            "install it (often `pip install sentencepiece`) or use translation_source='udhr'") from e
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise BackboneError(
            f"cannot load translation model {model_id!r} ({first}): a hub id needs a network connection the "
            "first time, or pass a local folder saved with save_pretrained. Offline, translation_source='udhr' "
            "(human UDHR translations) works with no model.") from e
    model.eval()
    return tok, model


def target_spec(tokenizer, lang: str) -> tuple[str | None, object]:
    """How to ask a model for ``lang``: ('forced_bos', token id) for M2M-100/NLLB-style vocabularies,
    ('prefix', '>>fra<<') for multi-target Marian models, (None, None) for a single-pair model
    (e.g. opus-mt-en-de), which can only produce its own target language."""
    vocab = tokenizer.get_vocab()
    for tok in (_NLLB.get(lang), f"__{lang}__"):
        if tok and tok in vocab:
            return "forced_bos", vocab[tok]
    for code in _MARIAN.get(lang, (lang,)):
        if f">>{code}<<" in vocab:
            return "prefix", f">>{code}<<"
    return None, None


def _set_source(tokenizer, source_lang: str) -> None:
    if not hasattr(tokenizer, "src_lang"):
        return
    vocab = tokenizer.get_vocab()
    for code in (_NLLB.get(source_lang), source_lang):
        if code and (code in vocab or f"__{code}__" in vocab):
            tokenizer.src_lang = code
            return


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-")[:80]


def translate_hub(texts: Sequence[str], target_lang: str, model_id: str = "alirezamsh/small100",
                  source_lang: str = "en", batch_size: int = 8, max_new_tokens: int = 256, num_beams: int = 1,
                  local_files_only: bool = False, cache: bool | str | Path = True,
                  progress: bool = False) -> list[str]:
    """Translate with a seq2seq model (M2M-100, NLLB, Marian...) loaded by ``AutoModelForSeq2SeqLM``.

    Decoding is deterministic (no sampling; greedy by default). Translations are cached in
    ``data/translations/<model>__<lang>.json`` keyed by the source text's sha256 (written atomically
    after each batch), so a rerun or an interrupted run only translates what is missing.
    SMALL-100 (the paper's model) cannot be loaded this way: see the error it raises for what works.
    """
    texts = [str(t) for t in texts]
    if batch_size < 1:
        raise ParamError(f"batch_size must be >= 1, got {batch_size}")
    if _is_small100(model_id):
        raise _small100_error(model_id)
    settings = f"{model_id}\0{source_lang}\0{target_lang}\0{num_beams}\0{max_new_tokens}"
    store: dict[str, str] = {}
    path = None
    if cache:
        root = Path(cache) if not isinstance(cache, bool) else data_dir() / "translations"
        path = root / f"{_slug(model_id)}__{source_lang}-{target_lang}__" \
                      f"{hashlib.sha256(settings.encode()).hexdigest()[:10]}.json"
        if path.is_file():
            try:
                store = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                store = {}
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    todo = list(dict.fromkeys(k for k in keys if k not in store))
    if todo:
        tok, model = _load_translator(str(model_id), bool(local_files_only))
        kind, spec = target_spec(tok, target_lang)
        _set_source(tok, source_lang)
        source = dict(zip(keys, texts))
        import torch

        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        if progress:
            from claspkit.progress import progress_bar

            batches = progress_bar(batches, desc=f"translate -> {target_lang}", unit="batch")
        for chunk in batches:
            src = [f"{spec} {source[k]}" if kind == "prefix" else source[k] for k in chunk]
            enc = tok(src, return_tensors="pt", padding=True, truncation=True)
            gen = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": False}
            if kind == "forced_bos":
                gen["forced_bos_token_id"] = spec
            with torch.no_grad():
                out = model.generate(**enc, **gen)
            for k, t in zip(chunk, tok.batch_decode(out, skip_special_tokens=True)):
                store[k] = t.strip()
            if path is not None:
                atomic_write_text(path, json.dumps(store, ensure_ascii=False, sort_keys=True))
    return [store[k] for k in keys]


# ------------------------------------------------------------------------------------ queries
def build_multilingual_queries(P, english: pd.DataFrame | None = None, unit: str = "paragraph",
                               translate: Callable | None = None) -> pd.DataFrame:
    """The Stage-4 table: ``id``, ``text`` (the English original, which the gallery speech says),
    and one query column per language in ``P.languages``.

    ``P.translation_source == 'udhr'``: the UDHR units aligned across English and every language
    (``unit`` 'paragraph' or 'article', see :func:`claspkit.data.udhr.parallel_articles`); English
    speech for them comes from :func:`synthesize_parallel_speech` with ``langs=['en']``.
    ``'hub'``: ``english`` (rows with ``id`` and ``text``; by default the manifest's test split)
    translated into each language with ``P.translation_model``. ``attrs['source']`` says which.
    """
    langs = [lang for lang in P.languages if lang != "en"]
    if not langs:
        raise ParamError("P.languages names no language besides English: set e.g. languages=['fa', 'de', 'fr', 'zh']")
    if P.translation_source == "udhr":
        from claspkit.data.udhr import parallel_articles

        df = parallel_articles(["en", *langs], unit=unit)
        out = df.rename(columns={"en": "text"})[["id", "text", *langs]].reset_index(drop=True)
        out.attrs.update(source=df.attrs["source"] + " (human translations)", report=df.attrs["report"])
        return out
    if P.translation_source == "hub":
        if english is None:
            from claspkit.data.corpus import load_manifest

            man = load_manifest(P)
            english = man[man.split == "test"]
        if not {"id", "text"} <= set(english.columns):
            raise ParamError("english must have 'id' and 'text' columns (manifest rows)")
        translate = translate or functools.partial(translate_hub, model_id=P.translation_model, progress=True)
        out = english[["id", "text"]].reset_index(drop=True).copy()
        for lang in langs:
            out[lang] = translate(out.text.tolist(), lang)
        out.attrs.update(source=f"machine translation by {P.translation_model}",
                         report=f"{len(out)} test transcripts translated into {', '.join(langs)} "
                                f"by {P.translation_model}.")
        return out
    raise ParamError(f"translation_source {choices_hint(P.translation_source, ('udhr', 'hub'))}")


# ------------------------------------------------------------------------------------ speech
def speech_voice(lang: str, voices: dict | None = None) -> str:
    """The voice spec that speaks ``lang``: ``voices[lang]`` if given, else espeak-ng's voice for it."""
    if voices and lang in voices:
        return voices[lang]
    if lang not in ESPEAK_VOICES:
        raise ParamError(f"no default voice for language {choices_hint(lang, ESPEAK_VOICES)}; "
                         f"pass voices={{'{lang}': 'espeak:<voice>'}}")
    return f"espeak:{ESPEAK_VOICES[lang]}"


def synthesize_parallel_speech(queries: pd.DataFrame, langs: Sequence[str], voices: dict | None = None,
                               workers: int = 2, progress: bool = True) -> pd.DataFrame:
    """Speech for each row of ``queries`` in each language: 'en' speaks ``text``, others their column.

    English speech is the Stage-4 gallery (queried with fa/de/fr/zh text, the paper's direction);
    speech *in* fa/de/fr/zh (espeak-ng voices fa, de, fr, cmn) serves the reverse direction, English
    text against non-English speech, which only a multilingual speech backbone (Whisper base) can do.
    Files go through :func:`claspkit.data.tts.synthesize_corpus`: content-addressed under ``data/audio``,
    resumable, atomic. Returns one row per (id, lang): ``id, lang, voice, text, path, duration_s``
    with ``path`` relative to the data folder (resolve with ``claspkit.data.corpus.audio_path``).
    """
    from claspkit.data import tts

    langs = list(dict.fromkeys(langs))
    missing = [lang for lang in langs if ("text" if lang == "en" else lang) not in queries.columns]
    if missing:
        raise ParamError(f"queries has no text for {missing}: build it with build_multilingual_queries")
    items = []
    for lang in langs:
        voice = speech_voice(lang, voices)
        col = "text" if lang == "en" else lang
        for qid, text in zip(queries["id"], queries[col]):
            items.append({"id": f"{qid}-{lang}", "query_id": qid, "lang": lang, "voice": voice, "text": str(text),
                          "path": tts.audio_relpath(str(text), voice)})
    durations = tts.synthesize_corpus(items, workers=workers, progress=progress)
    out = pd.DataFrame([{"id": it["query_id"], "lang": it["lang"], "voice": it["voice"], "text": it["text"],
                         "path": it["path"], "duration_s": float(d)} for it, d in zip(items, durations)],
                       columns=["id", "lang", "voice", "text", "path", "duration_s"])
    return out
