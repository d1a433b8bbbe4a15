"""espeak-ng: the pinned library of ``espeakng-loader`` (engine ``espeak``, the corpus default) and a system
``espeak-ng`` program (engine ``espeak-system``, only when asked for by name)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np

from claspkit.data.tts._base import Synthesizer, _wav_bytes_to_array
from claspkit.data.tts._spec import VoiceSpec
from claspkit.errors import AudioError, ToolMissingError

__all__ = ["ESPEAK_INSTALL", "ESPEAK_SYSTEM_INSTALL", "EspeakCLI", "EspeakLib"]

ESPEAK_INSTALL = ("the default 'espeak:' voices need the pip package espeakng-loader, a pinned claspkit "
                  "dependency: reinstall claspkit (`make setup`, or `pip install -c requirements.lock -e .`); "
                  "no root and no system espeak-ng are needed")
ESPEAK_SYSTEM_INSTALL = ("'espeak-system:' voices need the espeak-ng program on PATH: as root "
                         "`apt-get -o DPkg::Lock::Timeout=600 install espeak-ng`, or `conda install -c conda-forge "
                         "espeak-ng`; or use the default 'espeak:' voices (the pinned library, no root needed)")


class _EspeakBase(Synthesizer):
    options = {"rate": (80, 450), "pitch": (0, 99)}
    # en-shaw expects Shavian script; mbrola voices need the separate mbrola program.
    _EXCLUDE = {"en-shaw"}
    _RECOMMENDED_VARIANTS = ("en-us+f3", "en-gb+f2", "en-us+m3", "en-gb-scotland+f4")

    def primary(self) -> list[str]:
        """Language codes that name a voice of their own (not only an 'other language' alias)."""
        return self.voices()

    def recommended(self) -> list[str]:
        base = [v for v in self.primary() if v.startswith("en") and v not in self._EXCLUDE]
        var = [v for v in self._RECOMMENDED_VARIANTS if v.split("+")[0] in base and v.split("+")[1] in self.variants()]
        return base + var


class EspeakCLI(_EspeakBase):
    """A system espeak-ng program, one short process per sentence (deterministic for that build).

    Opt-in (engine ``espeak-system``): its audio depends on the system's espeak-ng version, so it
    is never the corpus default.
    """

    name = "espeak-system"

    def __init__(self, exe: str | None = None):
        self.exe = exe or shutil.which("espeak-ng")
        if not self.exe:
            raise ToolMissingError(f"the espeak-ng program is not on PATH: {ESPEAK_SYSTEM_INSTALL}")
        self._version = self._voices = self._variants = None

    def _run(self, args, **kw):
        return subprocess.run([self.exe, *args], capture_output=True, timeout=120, **kw)

    @property
    def version(self) -> str:
        if self._version is None:
            out = self._run(["--version"]).stdout.decode("utf-8", "replace")
            m = re.search(r"text-to-speech:\s*([\w.\-]+)", out)
            self._version = f"espeak-ng {m.group(1) if m else out.strip()[:40]} (system program)"
        return self._version

    def _list(self, which: str) -> list[tuple[str, str, list[str]]]:
        """Rows of ``espeak-ng --voices``: (language, file, other language codes)."""
        out = self._run([f"--voices={which}"] if which else ["--voices"]).stdout.decode("utf-8", "replace")
        rows = []
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 5:
                rows.append((parts[1], parts[4], re.findall(r"\(([\w-]+) \d+\)", line)))
        return rows

    def voices(self) -> list[str]:
        if self._voices is None:
            rows = [r for r in self._list("") if not r[1].startswith("mb/") and r[0] != "variant"]
            self._primary = sorted({lang for lang, _, _ in rows})
            self._voices = sorted({lang for lang, _, other in rows for lang in [lang, *other]})
        return self._voices

    def primary(self) -> list[str]:
        self.voices()
        return self._primary

    def variants(self) -> list[str]:
        if self._variants is None:
            self._variants = sorted({f.split("/", 1)[1] for _, f, _ in self._list("variant") if f.startswith("!v/")})
        return self._variants

    def render(self, text, vs):
        args = ["-b", "1", "-v", vs.voice + (f"+{vs.variant}" if vs.variant else "")]
        if vs.option("rate"):
            args += ["-s", str(int(float(vs.option("rate"))))]
        if vs.option("pitch"):
            args += ["-p", str(int(float(vs.option("pitch"))))]
        proc = self._run([*args, "--stdout"], input=text.encode("utf-8"))
        if proc.returncode != 0:
            raise AudioError(f"espeak-ng failed for voice {vs.spec!r}: "
                             f"{proc.stderr.decode('utf-8', 'replace').strip()}")
        return _wav_bytes_to_array(proc.stdout)


class EspeakLib(_EspeakBase):
    """espeak-ng through the shared library of the pip package ``espeakng-loader`` (ctypes).

    The canonical engine: its build is pinned with the Python packages, and its version string
    (part of every cache key) names the package version and the library's sha256. The library
    keeps hidden state between calls, so each sentence is rendered in a forked child of a freshly
    initialised engine: the same text and voice always give the same audio.
    """

    name = "espeak"

    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _RATE, _PITCH = 1, 3

    def __init__(self):
        import ctypes

        try:
            import espeakng_loader
        except ImportError as e:
            raise ToolMissingError(f"the espeakng-loader package is not installed: {ESPEAK_INSTALL}") from e
        try:
            self._lib_path = espeakng_loader.get_library_path()
            lib = ctypes.CDLL(self._lib_path)
            data = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as e:
            raise ToolMissingError(f"the espeak-ng library of espeakng-loader cannot be loaded ({e}): "
                                   f"{ESPEAK_INSTALL}") from e
        self._ct = ctypes
        self.lib = lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

        class _Voice(ctypes.Structure):
            _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                        ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                        ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]

        self._Voice = _Voice
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        self.sample_rate = lib.espeak_Initialize(self._AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if self.sample_rate <= 0:
            raise ToolMissingError(f"the espeak-ng library could not load its data from {data}: {ESPEAK_INSTALL}")
        self._chunks: list[bytes] = []
        cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = cb_type(self._on_audio)  # keep a reference: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed is not None:
            self._seed.argtypes = [ctypes.c_long]
        self._version = self._build_version()
        self._index = self._list_voices()
        self._variants = sorted(i.split("/", 1)[1] for _, i in self._list_raw(b"variant") if i.startswith("!v/"))

    def primary(self) -> list[str]:
        return sorted(self._primary)

    def _on_audio(self, wav, n, events):
        if wav and n > 0:
            self._chunks.append(self._ct.string_at(wav, n * 2))
        return 0

    def _list_raw(self, language: bytes | None):
        ct = self._ct
        spec = None
        if language is not None:
            v = self._Voice()
            v.languages = ct.cast(ct.c_char_p(language), ct.c_void_p)
            spec = ct.byref(v)
        arr = self.lib.espeak_ListVoices(spec)
        out, i = [], 0
        while arr[i]:
            v = arr[i].contents
            out.append((self._languages(v.languages), v.identifier.decode()))
            i += 1
        return out

    def _languages(self, ptr) -> list[tuple[int, str]]:
        """espeak's packed list: (priority byte, NUL-terminated name)*, then a zero byte."""
        out, pos = [], 0
        while ptr and self._ct.string_at(ptr + pos, 1)[0]:
            priority = self._ct.string_at(ptr + pos, 1)[0]
            name = self._ct.string_at(ptr + pos + 1)
            out.append((priority, name.decode()))
            pos += 2 + len(name)
        return out

    def _list_voices(self) -> dict[str, str]:
        """language code -> voice file, choosing the voice espeak ranks first for that language."""
        best: dict[str, tuple] = {}
        self._primary = set()
        for order, (langs, ident) in enumerate(self._list_raw(None)):
            if not langs or ident.startswith("mb/"):
                continue
            self._primary.add(langs[0][1])
            for priority, lang in langs:
                if lang not in best or (priority, order) < best[lang][:2]:
                    best[lang] = (priority, order, ident)
        return {lang: ident for lang, (_, _, ident) in best.items()}

    @property
    def version(self) -> str:
        return self._version

    def _build_version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        from claspkit.paths import sha256_file

        try:
            pkg = version("espeakng-loader")
        except PackageNotFoundError:  # imported from a source tree
            pkg = "unknown"
        lib_sha = sha256_file(self._lib_path)[:12]
        return f"espeak-ng {self.lib.espeak_Info(None).decode()} (espeakng-loader {pkg}, lib {lib_sha})"

    def voices(self):
        return sorted(self._index)

    def variants(self):
        return self._variants

    def _speak(self, text: str, vs: VoiceSpec) -> bytes:
        name = self._index[vs.voice] + (f"+{vs.variant}" if vs.variant else "")
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise AudioError(f"espeak-ng library could not select voice {vs.spec!r}")
        if vs.option("rate"):
            self.lib.espeak_SetParameter(self._RATE, int(float(vs.option("rate"))), 0)
        if vs.option("pitch"):
            self.lib.espeak_SetParameter(self._PITCH, int(float(vs.option("pitch"))), 0)
        if self._seed is not None:
            self._seed(0)
        self._chunks = []
        # The library keeps one callback per process: a second EspeakLib (a test's, a reloaded module's)
        # replaces this one's, and once that object is collected the library would call freed memory
        # ("TypeError: cannot build parameter", no audio). Point it back at our own live callback.
        self.lib.espeak_SetSynthCallback(self._callback)
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        self.lib.espeak_Synchronize()
        return b"".join(self._chunks)

    def render(self, text, vs):
        if not hasattr(os, "fork"):
            pcm = self._speak(text, vs)
        else:
            pcm = self._speak_in_child(text, vs)
        return np.frombuffer(pcm, dtype="<i2"), self.sample_rate

    def _speak_in_child(self, text, vs) -> bytes:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: render, write, exit without running any parent cleanup
            code = 1
            try:
                os.close(r)
                pcm = self._speak(text, vs)
                view = memoryview(pcm)
                while view:
                    view = view[os.write(w, view):]
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            pcm = fh.read()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise AudioError(f"espeak-ng library failed for voice {vs.spec!r} (child status {status})")
        return pcm
