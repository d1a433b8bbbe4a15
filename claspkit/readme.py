"""`python -m claspkit.readme --preset small`: regenerate the generated blocks of the README and docs/.

The results tables, the benchmark blocks and the parameter reference live between marker comments
(``<!-- name:start -->`` ... ``<!-- name:end -->``) in README.md or a page of docs/, and are written from
the runs' result files and from ``claspkit.config.SCHEMA``, never typed by hand. Each block is found in
whichever of those files holds its markers, so a block can move between pages without code changes.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from claspkit.config import describe
from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.paths import atomic_write_text, project_root

__all__ = ["DOC_FILES", "replace_block", "block_file", "write_block", "update", "update_bench", "update_params",
           "update_real", "main"]

DOC_FILES = ("README.md", "docs/*.md")      # where generated blocks may live, relative to the project root


def replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ClaspkitError(f"README.md has no '{start}' ... '{end}' block; add the markers where it belongs")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text)


def block_file(name: str):
    """The README or docs page that holds the ``name`` block (a ClaspkitError naming the files when none does)."""
    root = project_root()
    paths = [p for pattern in DOC_FILES for p in sorted(root.glob(pattern))]
    for path in paths:
        if f"<!-- {name}:start -->" in path.read_text():
            return path
    raise ClaspkitError(f"no '<!-- {name}:start -->' ... '<!-- {name}:end -->' block in "
                        f"{', '.join(DOC_FILES)}; add the markers where it belongs")


def write_block(name: str, body: str) -> str:
    """Replace the ``name`` block's body wherever it lives; returns the file's name relative to the root."""
    path = block_file(name)
    atomic_write_text(path, replace_block(path.read_text(), name, body))
    return str(path.relative_to(project_root()))


def update(preset: str) -> None:
    from claspkit.evaluation.report import readme_results, robustness_markdown
    from claspkit.evaluation.results import read_all

    if not read_all(preset):
        raise DataMissingError(f"no results for preset {preset!r} in runs/{preset}/results: "
                               f"run `make reproduce PRESET={preset}` first")
    files = {write_block("results", readme_results(preset)), write_block("params", describe()),
             write_block("robustness", robustness_markdown(preset) or
                         f"Not run yet for `{preset}`: run notebooks/09_robustness.ipynb (`make reproduce` does).")}
    print(f"{', '.join(sorted(files))}: results, params and robustness blocks regenerated from runs/{preset}/results")


def update_params() -> None:
    """Only the parameter reference: it is the schema, so a new knob needs no run to be documented."""
    print(f"{write_block('params', describe())}: params block regenerated from claspkit.config.SCHEMA")


def update_bench(preset: str) -> None:
    """Only the ``bench-<preset>`` block: a larger preset's one-run benchmark (``python -m
    claspkit.bench.retrieval --preset medium``) beside the small preset's full results."""
    from claspkit.evaluation.report import beyond_paper

    body = beyond_paper(preset)
    if body is None:
        raise DataMissingError(f"no runs/{preset}/results/retrieval_bench.json: run "
                               f"`python -m claspkit.bench.retrieval --preset {preset}` first")
    where = write_block(f"bench-{preset}", body)
    print(f"{where}: bench-{preset} block regenerated from runs/{preset}/results/retrieval_bench.json")


def update_real(source: str = "results/bench/adapt.json", modes: str = "results/bench/search_modes.json") -> None:
    """Only the ``real-speech`` block and its figure (from the committed ``bench.adapt`` result) and the
    ``search-modes`` block (from ``bench.search_modes``'s)."""
    import json

    from claspkit.bench import adapt, search_modes

    for name in (source, modes):
        if not (project_root() / name).is_file():
            raise DataMissingError(f"no {name}: run `python -m claspkit.bench.{Path(name).stem}` first")
    result = json.loads((project_root() / source).read_text())
    where = write_block("real-speech", adapt.markdown(result, source))
    figure = project_root() / "figures" / "real_speech.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    adapt.plot(result, figure)
    where_modes = write_block("search-modes", search_modes.markdown(json.loads((project_root() / modes).read_text()),
                                                                   modes))
    speaker = "results/bench/adapt_speaker.json"
    if (project_root() / speaker).is_file():             # optional: the own-archive experiment
        from claspkit.bench import adapt_speaker

        write_block("adapt-speaker", adapt_speaker.markdown(json.loads((project_root() / speaker).read_text()),
                                                            speaker))
    print(f"{where}: real-speech block, and figures/real_speech.png, regenerated from {source}; "
          f"{where_modes}: search-modes block from {modes}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--bench", metavar="PRESET", help="regenerate only the bench-PRESET block (e.g. medium)")
    ap.add_argument("--params", action="store_true", help="regenerate only the parameter reference")
    ap.add_argument("--real", action="store_true", help="regenerate only the real-speech block and figure")
    args = ap.parse_args(argv)
    try:
        (update_params() if args.params else update_real() if args.real else update_bench(args.bench) if args.bench
         else update(args.preset))
    except ClaspkitError as e:
        print(f"claspkit readme: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
