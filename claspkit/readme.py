"""`python -m claspkit.readme --preset small`: regenerate the README's generated blocks.

The results table and the parameter reference live between marker comments in README.md and are
written from the run's result files and from ``claspkit.config.SCHEMA``, never typed by hand.
"""
from __future__ import annotations

import argparse
import re
import sys

from claspkit.config import describe
from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.paths import atomic_write_text, project_root

__all__ = ["replace_block", "update", "update_bench", "update_params", "main"]


def replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ClaspkitError(f"README.md has no '{start}' ... '{end}' block; add the markers where it belongs")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text)


def update(preset: str) -> None:
    from claspkit.evaluation.report import readme_results, robustness_markdown
    from claspkit.evaluation.results import read_all

    if not read_all(preset):
        raise DataMissingError(f"no results for preset {preset!r} in runs/{preset}/results: "
                               f"run `make reproduce PRESET={preset}` first")
    path = project_root() / "README.md"
    text = path.read_text()
    text = replace_block(text, "results", readme_results(preset))
    text = replace_block(text, "params", describe())
    text = replace_block(text, "robustness", robustness_markdown(preset) or
                         f"Not run yet for `{preset}`: run notebooks/09_robustness.ipynb (`make reproduce` does).")
    atomic_write_text(path, text)
    print(f"README.md: results and robustness blocks regenerated from runs/{preset}/results")


def update_params() -> None:
    """Only the parameter reference: it is the schema, so a new knob needs no run to be documented."""
    path = project_root() / "README.md"
    atomic_write_text(path, replace_block(path.read_text(), "params", describe()))
    print("README.md: params block regenerated from claspkit.config.SCHEMA")


def update_bench(preset: str) -> None:
    """Only the ``bench-<preset>`` block: a larger preset's one-run benchmark (``python -m
    claspkit.bench.retrieval --preset medium``) beside the small preset's full results."""
    from claspkit.evaluation.report import beyond_paper

    body = beyond_paper(preset)
    if body is None:
        raise DataMissingError(f"no runs/{preset}/results/retrieval_bench.json: run "
                               f"`python -m claspkit.bench.retrieval --preset {preset}` first")
    path = project_root() / "README.md"
    atomic_write_text(path, replace_block(path.read_text(), f"bench-{preset}", body))
    print(f"README.md: bench-{preset} block regenerated from runs/{preset}/results/retrieval_bench.json")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--bench", metavar="PRESET", help="regenerate only the bench-PRESET block (e.g. medium)")
    ap.add_argument("--params", action="store_true", help="regenerate only the parameter reference")
    args = ap.parse_args(argv)
    try:
        update_params() if args.params else update_bench(args.bench) if args.bench else update(args.preset)
    except ClaspkitError as e:
        print(f"claspkit readme: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
