"""RHVoice 1.8 (LGPL) through its C library (ctypes): American English and Russian statistical parametric voices.

``RHVoice-test`` reads only /usr/share, so the library is driven directly: each voice gets its own engine whose
resource paths are the unpacked language and voice folders, with an empty data and config folder (a user's or
the system's RHVoice.conf never changes the audio). Voices evgeniy-eng and lyubov are left out: their licence
(CC BY-NC-ND) forbids derived works.
"""
from __future__ import annotations

import ctypes as C

import numpy as np

from claspkit.data.tts._debian import LIB_SUBDIR, DebianEngine, DebVoice
from claspkit.errors import AudioError, ToolMissingError

__all__ = ["RHVoiceSynthesizer"]

_EN, _RU = ("rhvoice-english",), ("rhvoice-russian",)
_PLAY = C.CFUNCTYPE(C.c_int, C.POINTER(C.c_short), C.c_uint, C.c_void_p)
_RATE = C.CFUNCTYPE(C.c_int, C.c_int, C.c_void_p)


class _Callbacks(C.Structure):
    _fields_ = [("set_sample_rate", _RATE), ("play_speech", _PLAY)] + [
        (n, C.c_void_p) for n in ("process_mark", "word_starts", "word_ends", "sentence_starts", "sentence_ends",
                                  "play_audio", "done")]


class _InitParams(C.Structure):
    _fields_ = [("data_path", C.c_char_p), ("config_path", C.c_char_p), ("resource_paths", C.POINTER(C.c_char_p)),
                ("callbacks", _Callbacks), ("options", C.c_uint)]


class _SynthParams(C.Structure):
    _fields_ = [("voice_profile", C.c_char_p)] + [(n, C.c_double) for n in (
        "absolute_rate", "absolute_pitch", "absolute_volume", "relative_rate", "relative_pitch", "relative_volume")
    ] + [("punctuation_mode", C.c_int), ("punctuation_list", C.c_char_p), ("capitals_mode", C.c_int),
         ("flags", C.c_int)]


class RHVoiceSynthesizer(DebianEngine):
    """``rhvoice:alan``, ``bdl``, ``clb``, ``slt`` (en); ``aleksandr``, ``anna``, ``elena``, ``irina`` (ru)."""

    name = "rhvoice"
    PACKAGES = ("librhvoice5", "librhvoice-core7", "libsonic0")
    VOICES = {**{v: DebVoice("en", v, _EN) for v in ("alan", "bdl", "clb", "slt")},
              **{v: DebVoice("ru", v, _RU) for v in ("aleksandr", "anna", "elena", "irina")}}
    REQUIRED = (("librhvoice5", f"{LIB_SUBDIR}/libRHVoice.so.5"),)
    LICENSE = "LGPL-2.1+ (engine and these voices)"
    _LANG_DIR = {"en": "English", "ru": "Russian"}

    def __init__(self):
        super().__init__()
        self._lib = None
        self._engines: dict = {}
        self._chunks: list[bytes] = []
        self._rate = 0
        self._play = _PLAY(self._on_audio)  # keep references: the library holds raw pointers
        self._set_rate = _RATE(self._on_rate)

    def _on_audio(self, samples, count, user):
        self._chunks.append(C.string_at(samples, count * 2))
        return 1

    def _on_rate(self, rate, user):
        self._rate = rate
        return 1

    def _library(self):
        if self._lib is None:
            roots = self.ready()
            for package, name in (("libsonic0", "libsonic.so.0"), ("librhvoice-core7", "libRHVoice_core.so.7")):
                C.CDLL(str(roots[package] / LIB_SUBDIR / name), mode=C.RTLD_GLOBAL)
            lib = C.CDLL(str(roots["librhvoice5"] / LIB_SUBDIR / "libRHVoice.so.5"))
            lib.RHVoice_new_tts_engine.restype = C.c_void_p
            lib.RHVoice_new_tts_engine.argtypes = [C.POINTER(_InitParams)]
            lib.RHVoice_new_message.restype = C.c_void_p
            lib.RHVoice_new_message.argtypes = [C.c_void_p, C.c_char_p, C.c_uint, C.c_int, C.POINTER(_SynthParams),
                                                C.c_void_p]
            lib.RHVoice_speak.argtypes = [C.c_void_p]
            lib.RHVoice_delete_message.argtypes = [C.c_void_p]
            self._lib = lib
        return self._lib

    def _engine(self, voice: str):
        if voice not in self._engines:
            lib, roots, v = self._library(), self.ready(voice), self.VOICES[voice]
            share = roots[v.packages[0]] / "usr/share/RHVoice"
            paths = [share / "languages" / self._LANG_DIR[v.lang], share / "voices" / voice]
            empty = roots["librhvoice5"].parent / ".claspkit-empty-home"
            empty.mkdir(exist_ok=True)
            keep = [str(p).encode() for p in paths]
            arr = (C.c_char_p * (len(keep) + 1))(*keep, None)
            params = _InitParams(data_path=str(empty).encode(), config_path=str(empty).encode(), resource_paths=arr,
                                 callbacks=_Callbacks(set_sample_rate=self._set_rate, play_speech=self._play))
            handle = lib.RHVoice_new_tts_engine(C.byref(params))
            if not handle:
                raise ToolMissingError(f"RHVoice could not load voice {voice!r} from {paths[1]}: delete "
                                       f"{roots[v.packages[0]]} and run again (it is unpacked afresh)")
            self._engines[voice] = (handle, arr)
        return self._engines[voice][0]

    def render(self, text, vs):
        engine = self._engine(vs.voice)
        data = text.encode("utf-8")
        params = _SynthParams(voice_profile=vs.voice.capitalize().encode(), relative_rate=1.0, relative_pitch=1.0,
                              relative_volume=1.0)
        self._chunks, self._rate = [], 0
        msg = self._lib.RHVoice_new_message(engine, data, len(data), 0, C.byref(params), None)
        if not msg:
            raise AudioError(f"RHVoice refused the text for voice {vs.spec!r}")
        try:
            ok = self._lib.RHVoice_speak(msg)
        finally:
            self._lib.RHVoice_delete_message(msg)
        if not ok or not self._rate:
            raise AudioError(f"RHVoice failed for voice {vs.spec!r}")
        return np.frombuffer(b"".join(self._chunks), dtype="<i2"), self._rate
