"""MBROLA diphone voices (non-free data, free to use) driven by Debian's espeak-ng 1.51.

The pinned pip espeak-ng cannot drive MBROLA, so this engine runs Debian's ``espeak-ng`` program on a private
espeak-ng-data folder: links to the Debian data plus ``mbrola/<voice>`` for each installed voice, with the
pinned ``mbrola`` program first on PATH (espeak-ng starts it per sentence).
"""
from __future__ import annotations

import os
from pathlib import Path

from claspkit.data.tts._base import _wav_bytes_to_array
from claspkit.data.tts._debian import LIB_SUBDIR, PULSE_RUNTIME, DebianEngine, DebVoice

__all__ = ["MbrolaSynthesizer"]

_LANGS = {"us1": "en", "us2": "en", "us3": "en", "en1": "en", "fr1": "fr", "fr4": "fr", "es2": "es", "it3": "it",
          "de2": "de"}


class MbrolaSynthesizer(DebianEngine):
    """``mbrola:us1`` (female), ``us2``, ``us3`` (male), ``en1`` (British male); ``fr1``, ``fr4``, ``es2``,
    ``it3``, ``de2``."""

    name = "mbrola"
    PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "libpcaudio0", "libsonic0", "mbrola", *PULSE_RUNTIME)
    VOICES = {v: DebVoice(lang, f"mb-{v}", (f"mbrola-{v}",)) for v, lang in _LANGS.items()}
    REQUIRED = (("espeak-ng", "usr/bin/espeak-ng"), ("mbrola", "usr/bin/mbrola"),
                ("espeak-ng-data", f"{LIB_SUBDIR}/espeak-ng-data/phontab"))
    LICENSE = "espeak-ng GPL-3; mbrola AGPL-3; MBROLA voices: non-commercial use with a non-commercial program"

    def home(self, voice: str) -> Path:
        """The folder passed as ``--path``: espeak-ng-data links, with ``voice``'s MBROLA database added."""
        roots = self.ready(voice)
        data = roots["espeak-ng-data"] / LIB_SUBDIR / "espeak-ng-data"
        home = roots["espeak-ng-data"].parent / f"mbrola-home-{roots['espeak-ng-data'].name}"
        mb = home / "espeak-ng-data" / "mbrola"
        mb.mkdir(parents=True, exist_ok=True)
        for entry in data.iterdir():
            _link(entry, home / "espeak-ng-data" / entry.name)
        db = roots[f"mbrola-{voice}"] / "usr/share/mbrola" / voice / voice
        _link(db, mb / voice)
        return home

    def render(self, text, vs):
        exe = self.ready()["espeak-ng"] / "usr/bin/espeak-ng"
        proc = self.run([str(exe), f"--path={self.home(vs.voice)}", "-v", self.VOICES[vs.voice].native, "--stdout",
                         "-b", "1"], vs, input=text.encode("utf-8"))
        return _wav_bytes_to_array(proc.stdout)


def _link(target: Path, link: Path) -> None:
    """Point ``link`` at ``target``, atomically (a concurrent process sees the old link or the new one)."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
