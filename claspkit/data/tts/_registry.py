"""The engine registry: engine name -> class, one instance per process, and the checks and addresses that need one.

Its own module so that the synthesis loop (``_synthesis``) reaches the engines without importing the package
that re-exports it (``claspkit.data.tts``); tests swap ``_INSTANCES`` here.
"""
from __future__ import annotations

import hashlib
from typing import Callable

from claspkit.data.tts._base import FORMAT_TAG, Synthesizer
from claspkit.data.tts._spec import VoiceSpec, parse_voice
from claspkit.data.tts.espeak import EspeakCLI, EspeakLib
from claspkit.data.tts.festival import FestivalSynthesizer
from claspkit.data.tts.flite import FliteSynthesizer
from claspkit.data.tts.mbrola import MbrolaSynthesizer
from claspkit.data.tts.pico import PicoSynthesizer
from claspkit.data.tts.piper import PiperSynthesizer
from claspkit.data.tts.rhvoice import RHVoiceSynthesizer
from claspkit.errors import ParamError, ToolMissingError, choices_hint

__all__ = ["ENGINES", "get_synthesizer", "list_voices", "check_voice", "audio_relpath"]


ENGINES: dict[str, Callable[[], Synthesizer]] = {
    "espeak": EspeakLib, "espeak-system": EspeakCLI, "piper": PiperSynthesizer, "flite": FliteSynthesizer,
    "festival": FestivalSynthesizer, "rhvoice": RHVoiceSynthesizer, "pico": PicoSynthesizer,
    "mbrola": MbrolaSynthesizer,
}
_INSTANCES: dict[str, Synthesizer] = {}


def get_synthesizer(engine: str) -> Synthesizer:
    """The engine by name, created once per process (ToolMissingError when not installed)."""
    if engine not in ENGINES:
        raise ParamError(f"unknown TTS engine {choices_hint(engine, ENGINES)}")
    if engine not in _INSTANCES:
        _INSTANCES[engine] = ENGINES[engine]()
    return _INSTANCES[engine]


def list_voices(engine: str | None = None) -> list[str]:
    """Recommended voice specs of the engines usable here (espeak: English voices and a few variants; the Debian
    engines: every voice, in every language, listed without installing anything)."""
    out = []
    for name in ([engine] if engine else ENGINES):
        try:
            syn = get_synthesizer(name)
        except ToolMissingError:
            if engine:
                raise
            continue
        out += [f"{name}:{v}" for v in syn.recommended()]
    return out


def check_voice(spec: str) -> VoiceSpec:
    """Parse and validate one voice spec against the installed engines."""
    vs = parse_voice(spec)
    get_synthesizer(vs.engine).check(vs)
    return vs


def audio_relpath(text: str, voice: str) -> str:
    """Where the audio of ``text`` in ``voice`` lives, relative to ``data_dir()``.

    ``audio/<engine>/<voice-slug>/<sha1(engine version, format, voice, text)[:16]>.wav``.
    """
    vs = parse_voice(voice)
    syn = get_synthesizer(vs.engine)
    key = f"{syn.cache_tag(vs)}\n{FORMAT_TAG}\n{vs.spec}\n{text}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    return f"audio/{vs.engine}/{vs.slug}/{digest}.wav"
