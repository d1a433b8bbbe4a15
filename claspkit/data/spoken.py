"""What a listener hears of a written text: its words, without case or punctuation.

A TTS engine says ``What is it"?`` and ``"What is it"?`` alike, and a WER count must not charge a comma, so the
corpus's splits (``claspkit.data.splits.straddling_twins``) and the cascade's WER share this one rule.
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["spoken_form"]

_SPACE = re.compile(r"\s+")


def spoken_form(text: str) -> str:
    """``text`` as it is heard, so that two texts spoken identically get one string.

    1. Unicode NFKC and lower-case (so full-width forms and case never differ);
    2. dashes and hyphens (Unicode category Pd) become spaces, so 'well-being' == 'well being';
    3. every other punctuation character (Unicode categories P*: quotes, brackets, marks) is deleted, so
       "don't" == 'dont' and 'end.' == 'end' (Unicode files '%' under punctuation too); symbols ($, +, =) and
       digits are kept as they are;
    4. runs of whitespace collapse to one space, and the ends are stripped.
    """
    text = unicodedata.normalize("NFKC", str(text)).lower()
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Pd":
            out.append(" ")
        elif not cat.startswith("P"):
            out.append(ch)
    return _SPACE.sub(" ", "".join(out)).strip()
