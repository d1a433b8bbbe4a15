"""Voice specs: ``engine:voice[+variant][?key=value&...]``, parsed once and compared by value."""
from __future__ import annotations

import re
from dataclasses import dataclass

from claspkit.errors import ParamError

__all__ = ["VoiceSpec", "parse_voice"]


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
