"""Festival 2.5 with Debian's voice packages: English (HTS and diphone), Spanish and Italian diphone voices.

Festival needs one library folder holding its Scheme code, lexicons and voices, so the unpacked packages are
merged (hard links) into one folder per build. Each sentence runs ``festival -q`` on a short script that sets
no user or system configuration (``sysconfdir`` and the system voice path point nowhere, HOME is empty), so
a system-wide Festival never changes the audio.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from claspkit.data.archives import MARKER
from claspkit.data.tts._debian import PULSE_RUNTIME, DebianEngine, DebVoice, build_id, read_wav

__all__ = ["FestivalSynthesizer"]


class FestivalSynthesizer(DebianEngine):
    """``festival:slt`` (HTS, female), ``kal``, ``ked``, ``don``, ``rab`` (diphone, male); ``el`` (es), ``lp``,
    ``pc`` (it)."""

    name = "festival"
    PACKAGES = ("festival", "libestools2.5", "festlex-cmu", "festlex-poslex", "festlex-oald", "festlex-ifd",
                "festvox-us-slt-hts", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-don", "festvox-rablpc16k",
                "festvox-ellpc11k", "festvox-italp16k", "festvox-itapc16k", *PULSE_RUNTIME)
    VOICES = {"slt": DebVoice("en", "cmu_us_slt_arctic_hts"), "kal": DebVoice("en", "kal_diphone"),
              "ked": DebVoice("en", "ked_diphone"), "don": DebVoice("en", "don_diphone"),
              "rab": DebVoice("en", "rab_diphone"), "el": DebVoice("es", "el_diphone"),
              "lp": DebVoice("it", "lp_diphone"), "pc": DebVoice("it", "pc_diphone")}
    REQUIRED = (("festival", "usr/bin/festival"), ("festival", "usr/share/festival/init.scm"))
    LICENSE = "festival: X11-style; voices and lexicons: free to use (don, oald, el: non-free/contrib sections)"

    def libdir(self) -> Path:
        """One folder merging every package's ``usr/share/festival`` (hard links, copies across devices)."""
        roots = self.ready()
        tag = hashlib.sha1(build_id(self.PACKAGES).encode()).hexdigest()[:12]
        dest = roots["festival"].parent / f"festival-libdir-{tag}"
        if (dest / MARKER).is_file():
            return dest
        work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            for package in self.PACKAGES:
                src = roots[package] / "usr/share/festival"
                if src.is_dir():
                    shutil.copytree(src, work, dirs_exist_ok=True, copy_function=_link_or_copy)
            (work / MARKER).write_text(tag + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            try:
                os.rename(work, dest)
            except OSError:
                if not (dest / MARKER).is_file():  # lost a race to another process that finished first
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return dest

    def render(self, text, vs):
        exe = self.ready()["festival"] / "usr/bin/festival"
        lib = self.libdir()
        with tempfile.TemporaryDirectory(prefix="claspkit-festival-") as tmp:
            out, script = Path(tmp) / "out.wav", Path(tmp) / "say.scm"
            script.write_text(
                '(define sysconfdir "/nonexistent/")\n(define system-voice-path nil)\n'
                '(define system-voice-path-multisyn nil)\n'
                f'(load {_scheme_string(str(lib / "init.scm"))})\n(voice_{self.VOICES[vs.voice].native})\n'
                f"(utt.save.wave (SynthText {_scheme_string(text)}) {_scheme_string(str(out))} 'riff)\n",
                encoding="utf-8")
            self.run([str(exe), "-q", "--libdir", str(lib), "--datadir", str(lib), "-b", str(script)], vs)
            return read_wav(out)


def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
