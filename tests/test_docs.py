"""The README stays a five-minute read, and every page it points to exists."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200, "README.md over 200 lines: move the detail to a page of docs/"
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links and all((ROOT / link).exists() for link in links), [x for x in links if not (ROOT / x).exists()]
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert page.name in text, f"README.md does not point to docs/{page.name}"
        for link in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / link).exists(), f"docs/{page.name} links to a missing {link}"



@pytest.mark.parametrize("module, source, page, block", [
    ("claspkit.bench.adapt", "results/bench/adapt.json", "docs/real-speech.md", "real-speech"),
    ("claspkit.bench.search_modes", "results/bench/search_modes.json", "docs/search.md", "search-modes"),
    ("claspkit.bench.adapt_speaker", "results/bench/adapt_speaker.json", "docs/real-speech.md", "adapt-speaker"),
])
def test_generated_blocks_are_their_committed_results(module, source, page, block):
    """Every number of these blocks is rendered from its committed result file, unchanged."""
    import importlib
    import json

    from claspkit.readme import replace_block

    if not (ROOT / source).is_file():
        pytest.skip(f"no committed {source} yet")
    text = (ROOT / page).read_text()
    expected = importlib.import_module(module).markdown(json.loads((ROOT / source).read_text()), source)
    assert replace_block(text, block, expected) == text, f"stale {block} block: run `python -m claspkit.readme --real`"
    if block == "real-speech":
        assert (ROOT / "figures" / "real_speech.png").is_file()
