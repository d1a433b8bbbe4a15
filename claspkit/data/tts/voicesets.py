"""Which voices speak which language, and the engine held out of training for the unseen-engine test.

A model trained on a few espeak voices collapses on real speech; these lists give it 24 English voices from
six engines (formant, diphone, HTS and other statistical parametric), and voices for fr, es, it, de, ru.
``HELD_OUT_ENGINE``'s voices are spoken in the corpus but never trained on, so a test on them measures how
well the model carries over to an engine it has never heard. ``params/voices.yaml`` uses ``ENGLISH``.
"""
from __future__ import annotations

__all__ = ["ENGLISH", "BY_LANGUAGE", "HELD_OUT_ENGINE", "training_voices", "held_out_voices"]

ENGLISH = [
    "espeak:en-us", "espeak:en-gb", "espeak:en-gb-scotland", "espeak:en-029", "espeak:en-us+f3",
    "flite:slt", "flite:rms", "flite:awb", "flite:kal16",
    "festival:slt", "festival:kal", "festival:ked", "festival:don", "festival:rab",
    "rhvoice:alan", "rhvoice:bdl", "rhvoice:clb", "rhvoice:slt",
    "mbrola:us1", "mbrola:us2", "mbrola:us3", "mbrola:en1",
    "pico:en-US", "pico:en-GB",
]
BY_LANGUAGE = {
    "en": ENGLISH,
    "fr": ["espeak:fr", "pico:fr-FR", "mbrola:fr1", "mbrola:fr4"],
    "es": ["espeak:es", "pico:es-ES", "mbrola:es2", "festival:el"],
    "it": ["espeak:it", "pico:it-IT", "mbrola:it3", "festival:lp", "festival:pc"],
    "de": ["espeak:de", "pico:de-DE", "mbrola:de2"],
    "ru": ["espeak:ru", "rhvoice:aleksandr", "rhvoice:anna", "rhvoice:elena", "rhvoice:irina"],
}
# SVOX Pico: a unit-concatenation engine unlike any other here, with two English voices (a small test share).
HELD_OUT_ENGINE = "pico"


def training_voices(lang: str = "en") -> list[str]:
    """The voices of ``lang`` a model may train on (every engine but the held-out one)."""
    return [v for v in BY_LANGUAGE[lang] if not v.startswith(f"{HELD_OUT_ENGINE}:")]


def held_out_voices(lang: str = "en") -> list[str]:
    return [v for v in BY_LANGUAGE[lang] if v.startswith(f"{HELD_OUT_ENGINE}:")]
