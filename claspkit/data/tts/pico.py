"""SVOX Pico (Apache-2.0 code, non-free data): one female voice each for en-US, en-GB, de, es, fr, it (ctypes).

``pico2wave`` reads only /usr/share, so libttspico is driven directly with the unpacked language files; a
fresh engine per sentence keeps no state between sentences.
"""
from __future__ import annotations

import ctypes as C

import numpy as np

from claspkit.data.tts._debian import LIB_SUBDIR, DebianEngine, DebVoice
from claspkit.errors import AudioError, ToolMissingError

__all__ = ["PicoSynthesizer"]

_MEMORY = 32_000_000  # bytes the engine works in: all six voices loaded at once (pico2wave gives 2.5 MB for one)
_STEP_BUSY = 201
_CHUNK = 16000  # bytes of text per call (the API counts in a signed 16-bit int)
_PICO_RATE = 16000  # Pico speaks at 16 kHz only


class PicoSynthesizer(DebianEngine):
    """``pico:en-US``, ``pico:en-GB``, ``pico:de-DE``, ``pico:es-ES``, ``pico:fr-FR``, ``pico:it-IT``."""

    name = "pico"
    PACKAGES = ("libttspico0", "libttspico-data")
    VOICES = {"en-US": DebVoice("en", "lh0"), "en-GB": DebVoice("en", "kh0"), "de-DE": DebVoice("de", "gl0"),
              "es-ES": DebVoice("es", "zl0"), "fr-FR": DebVoice("fr", "nk0"), "it-IT": DebVoice("it", "cm0")}
    REQUIRED = (("libttspico0", f"{LIB_SUBDIR}/libttspico.so.0"), ("libttspico-data", "usr/share/pico/lang"))
    LICENSE = "Apache-2.0 (code); voice data in Debian non-free (redistributable)"

    def __init__(self):
        super().__init__()
        self._lib = self._system = None
        self._resources: dict = {}

    def _init(self):
        if self._lib is None:
            lib = C.CDLL(str(self.ready()["libttspico0"] / LIB_SUBDIR / "libttspico.so.0"))
            self._memory = C.create_string_buffer(_MEMORY)
            system = C.c_void_p()
            if lib.pico_initialize(self._memory, _MEMORY, C.byref(system)) != 0:
                raise ToolMissingError("libttspico could not start: delete the libttspico0 folder under "
                                       "data/raw/debian and run again")
            self._lib, self._system = lib, system
        return self._lib

    def _voice(self, voice: str) -> bytes:
        """Load a voice's two resource files once; returns the voice definition's name."""
        lib = self._init()
        if voice not in self._resources:
            lang = self.ready()["libttspico-data"] / "usr/share/pico/lang"
            names = []
            for f in (f"{voice}_ta.bin", f"{voice}_{self.VOICES[voice].native}_sg.bin"):
                res, name = C.c_void_p(), C.create_string_buffer(200)
                if lib.pico_loadResource(self._system, str(lang / f).encode(), C.byref(res)) != 0:
                    raise ToolMissingError(f"libttspico could not load {lang / f}: delete "
                                           f"{self.ready()['libttspico-data']} and run again (it is unpacked afresh)")
                lib.pico_getResourceName(self._system, res, name)
                names.append(name.value)
            vname = f"claspkit-{voice}".encode()
            lib.pico_createVoiceDefinition(self._system, vname)
            for n in names:
                lib.pico_addResourceToVoiceDefinition(self._system, vname, n)
            self._resources[voice] = vname
        return self._resources[voice]

    def render(self, text, vs):
        lib, vname = self._init(), self._voice(vs.voice)
        engine = C.c_void_p()
        if lib.pico_newEngine(self._system, vname, C.byref(engine)) != 0:
            raise AudioError(f"libttspico could not start an engine for voice {vs.spec!r}")
        out, buf = [], C.create_string_buffer(4096)
        got, kind, put = C.c_int16(), C.c_int16(), C.c_int16()
        data = text.encode("utf-8") + b"\0"  # the NUL flushes the last sentence
        try:
            while data:
                chunk = data[:_CHUNK]
                if lib.pico_putTextUtf8(engine, chunk, len(chunk), C.byref(put)) != 0:
                    raise AudioError(f"libttspico refused the text for voice {vs.spec!r}")
                data = data[put.value:]
                while True:
                    status = lib.pico_getData(engine, buf, len(buf), C.byref(got), C.byref(kind))
                    if got.value > 0:
                        out.append(buf.raw[:got.value])
                    if status != _STEP_BUSY:
                        break
        finally:
            lib.pico_disposeEngine(self._system, C.byref(engine))
        return np.frombuffer(b"".join(out), dtype="<i2"), _PICO_RATE
