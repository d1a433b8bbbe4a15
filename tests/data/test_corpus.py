import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from claspkit.data import corpus
from claspkit.data.brown import Sentence
from claspkit.data.spoken import spoken_form
from claspkit.config import load_params
from claspkit.errors import DataMissingError, ParamError
from claspkit.data.manifest import MANIFEST_COLUMNS
from claspkit.data.tts import wav_duration

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and importlib.util.find_spec("espeakng_loader") is None,
    reason="no espeak-ng engine installed")


def _params(brown_dir, **kw):
    base = dict(n_sentences=None, voices=["espeak:en-us", "espeak:en-gb"], tts_workers=1, seed=42,
                brown_dir=str(brown_dir))
    base.update(kw)
    return load_params("tiny", base)


def _fleurs(root):
    for split, secs in (("train", 1.0), ("dev", 0.5), ("test", 0.75)):
        (root / "audio" / split).mkdir(parents=True)
        sf.write(root / "audio" / split / f"{split}1.wav", np.full(int(secs * 16000), 0.1, np.float32), 16000)
        (root / f"{split}.tsv").write_text(f"7\t{split}1.wav\tA {split} sentence.\ta {split} sentence\tx\t1\tFEMALE\n")
    return root


@needs_espeak
def test_build_corpus_end_to_end_and_reuse(fake_brown, isolated_data, tmp_path, monkeypatch, capsys):
    P = _params(fake_brown, fleurs_dir=str(_fleurs(tmp_path / "fleurs")))
    df = corpus.build_corpus(P, progress=False)
    out = capsys.readouterr().out
    assert "14 sentences read, 10 kept, 4 dropped" in out and "too long 1" in out and "duplicate 1" in out

    assert list(df.columns) == list(MANIFEST_COLUMNS)
    brown = df[df.source == "brown"]
    assert len(brown) == 10 and brown["id"].is_monotonic_increasing
    assert brown["id"].iloc[0] == "brown-ca01-0000"
    assert brown["text"].iloc[0] == 'The jury said "no evidence" was found.'
    assert set(brown["voice"]) <= {"espeak:en-us", "espeak:en-gb"} and set(brown["split"]) <= {"train", "val", "test"}
    assert (brown["sample_rate"] == 16000).all() and (brown["duration_s"] > 0.5).all()
    for p in brown["path"]:
        assert not Path(p).is_absolute() and wav_duration(corpus.audio_path(p)) is not None
    fl = df[df.source == "fleurs"]
    assert fl["split"].tolist() == ["train", "val", "test"] and fl["duration_s"].tolist() == pytest.approx([1, .5, .75])

    report = json.loads((corpus.report_path(P)).read_text())
    assert report["cleaning"]["dropped"] == {"empty": 0, "no_words": 1, "too_long": 1,
                                             "formula_placeholder": 1, "duplicate": 1}
    assert report["synthesis"]["synthesized"] == 10 and report["imported"] == {"fleurs": 3}
    assert df.attrs["report"]["sampled"] == 10
    pd.testing.assert_frame_equal(corpus.load_manifest(P), df)

    # idempotent: a second call reads nothing and synthesizes nothing
    def boom(*a, **k):
        raise AssertionError("should have reused the corpus")

    monkeypatch.setattr(corpus, "load_brown", boom)
    monkeypatch.setattr(corpus, "synthesize_corpus", boom)
    again = corpus.build_corpus(P, progress=False)
    pd.testing.assert_frame_equal(again, df)
    assert "reusing" in capsys.readouterr().out

    # a lost audio file makes it rebuild, which resynthesizes only that file
    monkeypatch.undo()
    monkeypatch.setenv("CLASPKIT_DATA", str(isolated_data))
    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))
    corpus.audio_path(brown.iloc[3]).unlink()
    rebuilt = corpus.build_corpus(P, progress=False, verbose=False)
    assert rebuilt.attrs["report"]["synthesis"]["reused"] == 9
    assert rebuilt["path"].tolist() == df["path"].tolist()
    # a damaged manifest is rebuilt, not trusted
    corpus.manifest_path(P).write_text("id,text\nbroken,row\n")
    fixed = corpus.build_corpus(P, progress=False, verbose=False)
    assert fixed.attrs["report"]["synthesis"]["reused"] == 10
    pd.testing.assert_frame_equal(fixed, df)


@needs_espeak
def test_presets_share_audio_and_sample_proportionally(fake_brown, isolated_data):
    small = corpus.build_corpus(_params(fake_brown, n_sentences=4), progress=False, verbose=False)
    assert len(small) == 4 and small["category"].nunique() == 3
    P = _params(fake_brown, n_sentences=None)
    full = corpus.build_corpus(P, progress=False, verbose=False)
    assert set(small["path"]) <= set(full["path"])  # content-addressed: nothing made twice
    assert full.attrs["report"]["synthesis"]["reused"] == 4


def test_sample_sentences_is_proportional_and_nested():
    sents = [Sentence(f"brown-c{c}{i:02d}-0000", f"c{c}{i:02d}", cat, ("x",), f"text {c}{i}")
             for c, cat, n in (("a", "news", 60), ("j", "learned", 30), ("r", "humor", 10)) for i in range(n)]
    pick = corpus.sample_sentences(sents, 10, seed=1)
    assert [s.category for s in pick].count("news") == 6 and [s.category for s in pick].count("humor") == 1
    assert [s.id for s in pick] == sorted(s.id for s in pick)
    assert {s.id for s in pick} <= {s.id for s in corpus.sample_sentences(sents, 50, seed=1)}
    assert corpus.sample_sentences(sents, None) == sents and corpus.sample_sentences(sents, 500) == sents
    assert corpus.sample_sentences(sents, 10, seed=2) != pick
    with pytest.raises(ParamError):
        corpus.sample_sentences(sents, 0)


def test_load_manifest_missing_says_run_notebook_01(isolated_data):
    with pytest.raises(DataMissingError, match="01_data"):
        corpus.load_manifest(load_params("tiny"))


def test_audio_path_resolves_relative_to_data_dir(isolated_data, tmp_path):
    assert corpus.audio_path("audio/espeak/en-us/a.wav") == isolated_data / "audio/espeak/en-us/a.wav"
    assert corpus.audio_path({"path": str(tmp_path / "x.wav")}) == tmp_path / "x.wav"
    assert corpus.audio_path(pd.Series({"path": "audio/b.wav"})) == isolated_data / "audio/b.wav"


def test_summary_and_category_counts():
    m = pd.DataFrame({
        "id": ["a", "b", "c", "d"], "source": ["brown", "brown", "brown", "fleurs"],
        "text": ["The cat sat.", "The dog, the cat.", "Don't stop", "Hello there."],
        "category": ["news", "news", "humor", "fleurs"], "voice": "", "path": "x",
        "duration_s": [1800.0, 1800.0, 3600.0, 36.0], "sample_rate": 16000,
        "split": ["train", "val", "test", "train"],
    })
    s = corpus.corpus_summary(m)
    assert s.index.tolist() == ["brown", "fleurs", "total"]
    b = s.loc["brown"]
    # tokens: [The cat sat .] [The dog , the cat .] [Don't stop] -> 4 + 6 + 2 = 12
    assert b["sentences"] == 3 and b["avg_tokens_per_sentence"] == 4.0
    assert b["unique_tokens"] == 8  # the cat sat . dog , don't stop (case-insensitive)
    assert b["hours"] == 2.0 and (b["train"], b["val"], b["test"]) == (1, 1, 1)
    assert s.loc["total", "sentences"] == 4 and s.loc["total", "hours"] == 2.01
    assert corpus.tokens("term-end 6.4 U.S. it's") == ["term-end", "6.4", "U.S", ".", "it's"]
    cc = corpus.category_counts(m)
    assert cc.to_dict("list") == {"category": ["news", "humor"], "sentences": [2, 1]}


def _presets(tmp_path, monkeypatch, **files):
    folder = tmp_path / "params"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    monkeypatch.setattr("claspkit.config.params_dir", lambda: folder)


def test_eval_from_keeps_the_smaller_presets_gallery_and_trains_on_the_rest(tmp_path, monkeypatch):
    sents = [Sentence(f"brown-c{c}{i:02d}-0000", f"c{c}{i:02d}", cat, ("x",), f"text {c}{i}")
             for c, cat, n in (("a", "news", 60), ("j", "learned", 30), ("r", "humor", 10)) for i in range(n)]
    _presets(tmp_path, monkeypatch, base="n_sentences: 40\nsplit: [0.5, 0.25, 0.25]\n",
             grown="n_sentences: 80\neval_from: base\n", shrunk="n_sentences: 20\neval_from: base\n",
             reseeded="n_sentences: 80\neval_from: base\nseed: 7\n")
    base = load_params("base")
    small = corpus.sample_sentences(sents, 40, base.seed)
    want = corpus.assign_splits(base, sents, [s.id for s in small], [s.category for s in small])
    assert Counter(want.values()) == {"train": 20, "val": 10, "test": 10}

    P = load_params("grown")
    big = corpus.sample_sentences(sents, 80, P.seed)
    got = corpus.assign_splits(P, sents, [s.id for s in big], [s.category for s in big])
    assert len(got) == 80
    for split in ("val", "test"):
        assert {i for i, s in got.items() if s == split} == {i for i, s in want.items() if s == split}
    assert Counter(got.values()) == {"train": 60, "val": 10, "test": 10}
    # without eval_from the same sample draws a different gallery: that is what the knob is for
    fresh = corpus.stratified_split(list(got), [s.category for s in big], P.split, P.seed)
    assert {i for i, s in fresh.items() if s == "test"} != {i for i, s in got.items() if s == "test"}

    shrunk = load_params("shrunk")
    few = corpus.sample_sentences(sents, 20, shrunk.seed)
    with pytest.raises(ParamError, match="not in this sample.*must be at least base's"):
        corpus.assign_splits(shrunk, sents, [s.id for s in few], [s.category for s in few])
    with pytest.raises(ParamError, match="its seed is 42 but this run's is 7"):
        corpus.assign_splits(load_params("reseeded"), sents, [s.id for s in big], [s.category for s in big])


def test_eval_from_must_name_another_preset(tmp_path, monkeypatch):
    _presets(tmp_path, monkeypatch, base="n_sentences: 40\n", loop="eval_from: loop\n")
    with pytest.raises(ParamError, match="eval_from.*nope"):
        load_params("base", eval_from="nope")
    with pytest.raises(ParamError, match="names this preset itself"):
        load_params("loop")


def test_eval_from_enters_the_fingerprint(tmp_path, monkeypatch, isolated_data):
    _presets(tmp_path, monkeypatch, base="n_sentences: 40\nvoices: [espeak:en-us]\n",
             grown="n_sentences: 80\nvoices: [espeak:en-us]\n")
    plain = corpus._fingerprint(load_params("grown"))
    nested = corpus._fingerprint(load_params("grown", eval_from="base"))
    assert plain != nested


def _twinned(n_twins=25):
    """100 distinct sentences and ``n_twins`` more that say the same words as one of them (quotes, a '?')."""
    sents = [Sentence(f"brown-c{c}{i:02d}-0000", f"c{c}{i:02d}", cat, ("x",), f"text {c}{i}")
             for c, cat, n in (("a", "news", 60), ("j", "learned", 30), ("r", "humor", 10)) for i in range(n)]
    twins = [Sentence(s.id[:-4] + "0001", s.fileid, s.category, ("x",), f'"{s.text}"?') for s in sents[::4][:n_twins]]
    return sorted(sents + twins, key=lambda s: s.id)


def _one_split_per_spoken_form(split_of, sents):
    text_of = {s.id: s.text for s in sents}
    by_form = {}
    for i, sp in split_of.items():
        by_form.setdefault(spoken_form(text_of[i]), set()).add(sp)
    return all(len(v) == 1 for v in by_form.values())


def test_spoken_twins_never_straddle_splits_and_the_test_gallery_stays(tmp_path, monkeypatch):
    """'What is it"?' in test and '"What is it"?' in training: TTS says both alike, so the test answer leaked."""
    sents = _twinned()
    ids, cats = [s.id for s in sents], [s.category for s in sents]
    P = load_params("tiny")
    drawn = corpus.stratified_split(ids, cats, P.split, P.seed)
    got = corpus.assign_splits(P, sents, ids, cats)
    dropped = set(ids) - set(got)
    assert dropped and _one_split_per_spoken_form(got, sents)
    assert got == {i: drawn[i] for i in got}  # nothing else moves
    assert {i for i, s in got.items() if s == "test"} == {i for i, s in drawn.items() if s == "test"}
    assert all(drawn[i] != "test" for i in dropped)
    alone = [s for s in sents if not s.id.endswith("0001")]  # no twins: every sentence and split as before
    assert corpus.assign_splits(P, alone, [s.id for s in alone], [s.category for s in alone]) == \
        corpus.stratified_split([s.id for s in alone], [s.category for s in alone], P.split, P.seed)


def test_eval_from_drops_a_new_twin_of_the_smaller_presets_held_out_sentence(tmp_path, monkeypatch):
    sents = _twinned()
    _presets(tmp_path, monkeypatch, base="n_sentences: 80\nsplit: [0.5, 0.25, 0.25]\n",
             grown="n_sentences: 125\neval_from: base\n")
    small = corpus.sample_sentences(sents, 80, 42)
    base = corpus.assign_splits(load_params("base"), sents, [s.id for s in small], [s.category for s in small])
    got = corpus.assign_splits(load_params("grown"), sents, [s.id for s in sents], [s.category for s in sents])
    assert _one_split_per_spoken_form(got, sents)
    for split in ("val", "test"):
        assert {i for i, s in got.items() if s == split} == {i for i, s in base.items() if s == split}
    held = {spoken_form(s.text) for s in sents if base.get(s.id, "train") != "train"}
    new_twins = [s.id for s in sents if s.id not in base and spoken_form(s.text) in held]
    assert new_twins and not set(new_twins) & set(got)


def test_a_manifest_whose_spoken_twins_straddle_splits_is_rebuilt_not_reused(tmp_path, monkeypatch, isolated_data):
    """A manifest written before the twin rule is rebuilt; one the rule does not change is reused as it is."""
    from claspkit.data.manifest import write_manifest

    P = load_params("tiny")
    rows = []
    for i, (text, split) in enumerate([("What is it?", "test"), ('"What is it"?', "train"), ("Go.", "val")]):
        path = isolated_data / "audio" / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        rows.append({"id": f"brown-ca01-{i:04d}", "source": "brown", "text": text, "category": "news",
                     "voice": "espeak:en-us", "path": f"audio/{i}.wav", "duration_s": 1.0, "sample_rate": 16000,
                     "split": split})
    write_manifest(pd.DataFrame(rows), corpus.manifest_path(P))
    corpus.report_path(P).write_text(json.dumps({"fingerprint": "f"}))
    assert corpus._reusable(P, "f") is None
    rows[1]["split"] = "test"
    write_manifest(pd.DataFrame(rows), corpus.manifest_path(P))
    assert corpus._reusable(P, "f") is not None
