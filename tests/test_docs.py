"""The README stays a five-minute read, and every page it points to exists."""
import re
from pathlib import Path

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


def test_the_real_speech_block_is_its_committed_result():
    """Every number of docs/real-speech.md's block is rendered from results/bench/adapt.json, unchanged."""
    import json

    import pytest

    from claspkit.bench.adapt import markdown
    from claspkit.readme import replace_block

    source = ROOT / "results" / "bench" / "adapt.json"
    if not source.is_file():
        pytest.skip("no committed results/bench/adapt.json yet")
    page = (ROOT / "docs" / "real-speech.md").read_text()
    expected = markdown(json.loads(source.read_text()), "results/bench/adapt.json")
    assert replace_block(page, "real-speech", expected) == page, "stale block: run `python -m claspkit.readme --real`"
    assert (ROOT / "figures" / "real_speech.png").is_file()


def test_the_search_modes_block_is_its_committed_result():
    import json

    import pytest

    from claspkit.bench.search_modes import markdown
    from claspkit.readme import replace_block

    source = ROOT / "results" / "bench" / "search_modes.json"
    if not source.is_file():
        pytest.skip("no committed results/bench/search_modes.json yet")
    page = (ROOT / "docs" / "search.md").read_text()
    expected = markdown(json.loads(source.read_text()), "results/bench/search_modes.json")
    assert replace_block(page, "search-modes", expected) == page, "stale block: run `python -m claspkit.readme --real`"
