"""Compare a notebook cell's committed output with a fresh one: words exactly, numbers within a tolerance.

Why: torch/MKL, oneDNN and CTranslate2 pick kernels by CPU vendor and instruction set, and training turns
their last-bit differences into different HITS@1 on a 40-item gallery (one item is 0.025). The committed
outputs were computed on one CPU; on any other the checked cells are compared here instead of byte for
byte, so a wrong metric, a swapped table or a broken loss still fails while kernel noise passes.

A checked cell opts into a tolerance with a comment line naming a class below: ``# NBVAL_TOLERANCE trained``.
Cells without one (corpus counts, split sizes, file lists: byte-identical inputs, no float kernels) are
compared exactly on every CPU. Text is compared with runs of whitespace collapsed, so a wider number that
shifts a pandas column's alignment is not a difference; tables are compared through their HTML when a cell
has both, since the plain-text rendering wraps columns by width.

Where the numbers come from (the measurements are in docs/nbval-tolerances.md):
* AMD EPYC AVX2 against the AVX-512 stamps (2026-12-05, issue 29): tiny's HITS@1/MRR moved by 0.025-0.075,
  one Stage-2 choice flipped, notebook 05's WER moved.
* Intel Xeon AVX-512 against AMD EPYC AVX-512 stamps, and Intel Xeon with its kernels limited to AVX2
  (``ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2``) against the Intel
  stamps (2026-12-07): the largest differences per class are listed with each class.
Each bound is the largest difference measured, widened by half and rounded up, so the next CPU kind has
room while a corrupted metric (a swapped row, a loss that does not train) still lands far outside it.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "NBVAL_TOLERANCE"

# A number as pandas and f-strings print it: 57,340 / -0.204 / 1e-05 / .5 (not the 5 in "e5-small").
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?!\w)")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Tolerance:
    """How far a number may move between CPU kinds.

    ``abs_tol`` for a decimal fraction (|committed| <= 1: HITS@k, MRR, F1, WER and their deltas),
    ``rel_tol * |committed|`` for a larger decimal (meanR, losses), and ``max(1, counts * |committed|)`` for an
    integer (an early-stopping epoch, error counts) when ``counts`` is set; integers (gallery sizes, corpus
    counts) are exact otherwise. ``words`` lists groups of words that may stand for each other (a near-tie
    choice that a kernel difference can flip).
    """

    abs_tol: float = 0.0
    rel_tol: float = 0.0
    counts: float = 0.0
    words: tuple[tuple[str, ...], ...] = ()
    why: str = ""

    def allows(self, committed: str, fresh: str) -> bool:
        if committed == fresh:
            return True
        a, b = _value(committed), _value(fresh)
        if a is None or b is None or (not _is_float(committed) and not self.counts):
            return False
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= self.bound(committed) + 1e-12

    def bound(self, committed: str) -> float:
        v = abs(_value(committed) or 0.0)
        if not _is_float(committed):
            return max(1.0, self.counts * v) if self.counts else 0.0
        return self.abs_tol if v <= 1 else self.rel_tol * v


EXACT = Tolerance(why="byte-identical inputs and no float kernels: compared exactly on every CPU")

TOLERANCES: dict[str, Tolerance] = {
    "trained": Tolerance(
        abs_tol=0.23, rel_tol=0.3,
        why="metrics of heads trained on the tiny preset (40-item galleries; measured: fractions moved by up to 0.15, "
            "meanR and losses by up to 19 %)"),
    "trained-counts": Tolerance(
        abs_tol=0.23, rel_tol=0.3, counts=0.5,
        why="as 'trained', with an early-stopping epoch, a discrete choice that kernel noise moves (25 -> 13 seen)"),
    "few-items": Tolerance(
        abs_tol=0.75, rel_tol=1.1, counts=0.5,
        why="notebook 09's slices of 6-16 real or noisy utterances, where one item is 0.06-0.17 of HITS@1 (measured: "
            "fractions moved by up to 0.5, three of 6 items; the cascade's WER under 0 dB noise by 73 %): only gross "
            "errors are caught here, the words and counts exactly"),
    "stage2-choice": Tolerance(
        abs_tol=0.06, words=(("gating", "concat"), ("e5-small-multilingual", "muse-multilingual")),
        why="the Stage-2 configuration that validation MRR picks on 40 items: a near tie that kernels flipped "
            "(e5 + gating 0.499 vs muse + concat 0.533)"),
    "asr": Tolerance(
        abs_tol=0.02, counts=0.06,
        why="Whisper transcripts (CTranslate2's and MKL's kernels differ by vendor and instruction set; measured: WER "
            "moved by up to 0.010, its error counts by up to 6 of 168)"),
}


def tolerance_of(source: str) -> Tolerance:
    """The class a cell names with ``# NBVAL_TOLERANCE <class>``, else exact comparison."""
    for line in source.splitlines():
        words = line.strip().lstrip("#").split()
        if line.strip().startswith("#") and words[:1] == [MARKER]:
            if len(words) != 2 or words[1] not in TOLERANCES:
                raise ValueError(f"'{line.strip()}': name one tolerance class of {', '.join(TOLERANCES)} "
                                 "(tests/nbval_tolerance.py)")
            return TOLERANCES[words[1]]
    return EXACT


def split_numbers(text: str) -> tuple[list[str], list[str]]:
    """(words between the numbers, whitespace collapsed; the numbers as printed)."""
    words, numbers, last = [], [], 0
    for m in _NUMBER.finditer(text):
        words.append(text[last:m.start()])
        numbers.append(m.group())
        last = m.end()
    words.append(text[last:])
    return [_SPACE.sub(" ", w).strip() for w in words], numbers


def difference(committed: str, fresh: str, tol: Tolerance) -> str | None:
    """None when ``fresh`` matches ``committed`` within ``tol``, else what differs first (for the report)."""
    if committed == fresh:
        return None
    cw, cn = split_numbers(committed)
    fw, fn = split_numbers(fresh)
    if len(cn) != len(fn):
        return f"{len(fn)} numbers where the committed output has {len(cn)}"
    for i, (a, b) in enumerate(zip(cw, fw)):
        if _canonical(a, tol) != _canonical(b, tol):
            return f"text differs near number {i}: committed {a[-60:]!r}, now {b[-60:]!r}"
    for i, (a, b) in enumerate(zip(cn, fn)):
        if not tol.allows(a, b):
            kind = f"within {tol.bound(a):g}" if tol.bound(a) else "exactly"
            return f"number {i} after {cw[i][-40:]!r}: committed {a}, now {b} (compared {kind})"
    return None


def _canonical(words: str, tol: Tolerance) -> str:
    for k, group in enumerate(tol.words):
        for w in group:
            words = re.sub(rf"(?<![\w-]){re.escape(w)}(?![\w-])", f"<choice{k}>", words)
    return words


def _is_float(s: str) -> bool:
    return "." in s or "e" in s.lower()


def _value(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def _sanitizers(cfg: Path):
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(cfg)
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def _checked_texts(path: Path, sanitizers):
    """(cell index, source, [output texts as compared: HTML over plain text]) of each checked cell."""
    cells = json.loads(path.read_text())["cells"]
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or "NBVAL_CHECK_OUTPUT" not in source:
            continue
        texts = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = "".join(data.get("text/html") or data.get("text/markdown") or data.get("text/plain")
                           or out.get("text", ""))
            for regex, replace in sanitizers:
                text = regex.sub(replace, text)
            texts.append(text)
        yield i, source, texts


def measure(committed_dir, fresh_dir, cfg=Path(__file__).with_name("sanitize.cfg")) -> list[dict]:
    """The largest difference of each checked cell between two executions of the notebooks (to set bounds).

    For each cell: whether its words match, and the largest |difference| among fractions (|x| <= 1),
    relative difference among larger decimals, and |difference| among integers.
    """
    rows, sanitizers = [], _sanitizers(cfg)
    for path in sorted(Path(committed_dir).glob("[0-9][0-9]_*.ipynb")):
        if not (Path(fresh_dir) / path.name).is_file():
            continue
        fresh = dict((i, t) for i, _, t in _checked_texts(Path(fresh_dir) / path.name, sanitizers))
        for i, source, texts in _checked_texts(path, sanitizers):
            row = {"notebook": path.name, "cell": i, "class": _class_name(source), "same_words": True,
                   "fraction": 0.0, "relative": 0.0, "integer": 0, "numbers": 0}
            for a, b in zip(texts, fresh.get(i, [])):
                aw, an = split_numbers(a)
                bw, bn = split_numbers(b)
                row["same_words"] &= aw == bw and len(an) == len(bn)
                for x, y in zip(an, bn):
                    vx, vy = _value(x), _value(y)
                    if vx is None or vy is None or x == y:
                        continue
                    row["numbers"] += 1
                    if not _is_float(x):
                        row["integer"] = max(row["integer"], int(abs(vx - vy)))
                    elif abs(vx) <= 1:
                        row["fraction"] = max(row["fraction"], round(abs(vx - vy), 4))
                    else:
                        row["relative"] = max(row["relative"], round(abs(vx - vy) / abs(vx), 4))
            rows.append(row)
    return rows


def _class_name(source: str) -> str:
    tol = tolerance_of(source)
    return next((k for k, v in TOLERANCES.items() if v is tol), "exact")


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "measure":
        sys.exit("usage: python tests/nbval_tolerance.py measure COMMITTED_NOTEBOOKS_DIR FRESH_NOTEBOOKS_DIR")
    print(json.dumps([r for r in measure(sys.argv[2], sys.argv[3]) if r["numbers"] or not r["same_words"]], indent=1))
