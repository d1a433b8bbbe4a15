"""One exception family, so callers (and notebooks) can catch claspkit's own failures.

Every message names the problem *and* what to do about it.
"""

__all__ = [
    "ClaspkitError", "ParamError", "DataMissingError", "AudioError", "BackboneError", "ToolMissingError",
    "ChecksumError", "choices_hint",
]


class ClaspkitError(Exception):
    """Base class of every error claspkit raises on purpose."""


class ParamError(ClaspkitError, ValueError):
    """An unknown parameter, or a value outside its valid choices."""


class DataMissingError(ClaspkitError, FileNotFoundError):
    """A corpus, folder or file the run needs is not there."""


class AudioError(ClaspkitError, ValueError):
    """An audio file that cannot be used (empty, silent, corrupt, NaN...)."""


class BackboneError(ClaspkitError):
    """An unknown encoder, or one that cannot be loaded here (e.g. needs a network)."""


class ToolMissingError(ClaspkitError):
    """An external program (TTS engine, npm) that is not installed."""


class ChecksumError(ClaspkitError):
    """A packaged weight or downloaded data file whose sha256 is not the pinned one."""


def choices_hint(value, choices) -> str:
    """'x' is not one of: a, b, c — the fragment every unknown-name error shares."""
    return f"{value!r} is not one of: {', '.join(map(str, sorted(choices)))}"
