"""Read a JSON manifest written last by a commit (the index's and the transcript store's): absent, or checked."""
from __future__ import annotations

import json
from pathlib import Path

from claspkit.errors import ClaspkitError
from claspkit.paths import display_path

__all__ = ["read_manifest"]


def read_manifest(path, what: str, fmt: int, fix: str) -> dict | None:
    """The manifest at ``path``, or None when there is none; an unreadable one or another ``format`` is an error
    naming ``what`` it is and the ``fix``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ClaspkitError(f"{display_path(path)} is not a readable {what} manifest ({e}); {fix}") from e
    if manifest.get("format") != fmt:
        raise ClaspkitError(f"{display_path(path)} has {what} format {manifest.get('format')!r}, this claspkit reads "
                            f"{fmt}; {fix}")
    return manifest
