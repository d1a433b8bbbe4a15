"""Text-to-speech behind one small interface, and resumable parallel synthesis of a corpus.

The paper read all of Brown with one Tacotron 2 voice; we assign several voices per sentence
(deterministically) so the model cannot learn one speaker. Engines (one module each):

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
- ``flite``, ``festival``, ``rhvoice``, ``pico``, ``mbrola``: engines of pinned Debian packages, downloaded
  and unpacked under the data folder on first use, no root (``_debian``): ``flite:rms``, ``festival:don``,
  ``rhvoice:bdl``, ``pico:en-GB``, ``mbrola:us2``; French, Spanish, Italian, German and Russian voices too.
  ``voicesets`` assigns them to languages and names the engine held out of training.

Every file is 16 kHz mono PCM16 and content-addressed (engine build + voice + text), so
presets share synthesis, audio of two builds is never mixed, and a rerun after a crash only
makes what is missing. The registry (``ENGINES``, one instance of each per process) lives in ``_registry``.
"""
from __future__ import annotations

from claspkit.constants import SAMPLE_RATE
from claspkit.data.tts._base import FORMAT_TAG, MIN_PEAK, Synthesizer, resample_poly, to_mono_16k
from claspkit.data.tts._registry import ENGINES, audio_relpath, check_voice, get_synthesizer, list_voices
from claspkit.data.tts._spec import VoiceSpec, parse_voice
from claspkit.data.tts._synthesis import LOCK_NAME, Durations, assign_voices, synthesize_corpus, wav_duration
from claspkit.data.tts.espeak import ESPEAK_INSTALL, ESPEAK_SYSTEM_INSTALL, EspeakCLI, EspeakLib
from claspkit.data.tts.festival import FestivalSynthesizer
from claspkit.data.tts.flite import FliteSynthesizer
from claspkit.data.tts.mbrola import MbrolaSynthesizer
from claspkit.data.tts.pico import PicoSynthesizer
from claspkit.data.tts.piper import PIPER_INSTALL, PiperSynthesizer
from claspkit.data.tts.rhvoice import RHVoiceSynthesizer

__all__ = [
    "SAMPLE_RATE", "FORMAT_TAG", "LOCK_NAME", "MIN_PEAK", "ESPEAK_INSTALL", "ESPEAK_SYSTEM_INSTALL", "PIPER_INSTALL",
    "VoiceSpec", "parse_voice", "Synthesizer", "to_mono_16k", "resample_poly", "EspeakCLI", "EspeakLib",
    "PiperSynthesizer", "FliteSynthesizer", "FestivalSynthesizer", "RHVoiceSynthesizer", "PicoSynthesizer",
    "MbrolaSynthesizer", "ENGINES", "get_synthesizer", "list_voices", "check_voice", "audio_relpath",
    "assign_voices", "wav_duration", "Durations", "synthesize_corpus",
]
