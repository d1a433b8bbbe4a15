"""flite 2.2 (CMU, BSD-like): four en-US voices compiled into Debian's libflite1, one short process per sentence."""
from __future__ import annotations

import tempfile
from pathlib import Path

from claspkit.data.tts._debian import DebianEngine, DebVoice, read_wav

__all__ = ["FliteSynthesizer"]


class FliteSynthesizer(DebianEngine):
    """``flite:slt`` (female), ``flite:rms``, ``flite:awb`` (Scottish), ``flite:kal16`` (diphone, male)."""

    name = "flite"
    PACKAGES = ("flite", "libflite1")
    VOICES = {v: DebVoice("en", v) for v in ("slt", "rms", "awb", "kal16")}
    REQUIRED = (("flite", "usr/bin/flite"), ("libflite1", "usr/lib/x86_64-linux-gnu/libflite.so.1"))
    LICENSE = "BSD-like (flite)"

    def render(self, text, vs):
        exe = self.ready()["flite"] / "usr/bin/flite"
        with tempfile.TemporaryDirectory(prefix="claspkit-flite-") as tmp:
            out = Path(tmp) / "out.wav"
            self.run([str(exe), "-voice", self.VOICES[vs.voice].native, "-t", text, "-o", str(out)], vs)
            return read_wav(out)
