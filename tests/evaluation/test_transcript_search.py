"""The three-mode evaluation and the hybrid weight's choice, on the search fixtures' library (fake backbones)."""
import json

import numpy as np
import pandas as pd
import pytest

from claspkit.evaluation import transcript_search as T
from claspkit.search.index import load_index
from search_fixtures import SENTENCES, SR, FakeASR


@pytest.fixture
def truth(library, voice, fakes):
    """Where a.wav's two sentences and b.flac's one are (search_fixtures.library writes them), and a fake ASR that
    hears them right."""
    fakes[("asr", "fake-asr")] = asr = FakeASR("fake-asr")
    asr.known = {t: len(v) / SR + 0.2 for t, v in zip(SENTENCES, voice)}
    d0, d1, d2 = (len(voice[i]) / SR for i in range(3))
    df = pd.DataFrame([{"text": SENTENCES[0], "file": "a.wav", "start_s": 0.5, "end_s": 0.5 + d0},
                       {"text": SENTENCES[1], "file": "a.wav", "start_s": 2.0 + d0, "end_s": 2.0 + d0 + d1},
                       {"text": SENTENCES[2], "file": "b.flac", "start_s": 0.5, "end_s": 0.5 + d2}])
    df.attrs["folder"] = str(library)
    return df


def test_split_prompts_keeps_validation_apart_from_notebook_09s_test_sample():
    from claspkit.experiments.pipeline import sample_indices

    prompts = pd.DataFrame({"id": [f"p{i}" for i in range(50)]})
    test, val = T.split_prompts(prompts, 10, 20, seed=42)
    assert list(test["id"]) == list(prompts.iloc[sample_indices(50, 10, 43)]["id"])     # notebook 09's draw
    assert len(val) == 20 and not set(test["id"]) & set(val["id"])
    with pytest.raises(Exception, match="left for validation"):
        T.split_prompts(prompts, 40, 20, seed=42)


def test_modes_are_scored_on_the_same_prompts_and_the_weight_is_chosen_on_them(truth, ckpt, tmp_path):
    table, facts = T.evaluate_modes(truth, ckpt, tmp_path / "idx", "fake-asr", weight=0.5, bootstrap=20)
    assert list(table.index) == ["clasp", "transcript", "hybrid"] and set(table["n"]) == {3}
    assert table.loc["transcript", "hits@1"].startswith("1.000")          # the fake ASR hears every sentence
    assert "timestamps within 0.5 s (words)" in table and facts["clasp_weight"] == 0.5
    assert set(facts["indexing"]) == {"without --transcribe", "with --transcribe fake-asr"}

    out = tmp_path / "weight.json"
    info = T.choose_hybrid_weight(truth, ckpt, tmp_path / "val", "fake-asr", "the library", out=out, grid=(0.0, 1.0))
    assert json.loads(out.read_text()) == json.loads(json.dumps(info))
    by = info["chosen_by"]["by_weight"]
    assert info["clasp_weight"] == T.pick_weight(by) and by["0"]["mrr"] == 1.0
    assert info["chosen_by"]["data"] == "the library"
    scores = T.mode_scores(load_index(tmp_path / "val"), truth, modes=("hybrid",), weight=0.0, bounds=False)
    np.testing.assert_array_equal(scores["hybrid"]["hits@1"], 1.0)


def test_a_tie_on_validation_gives_clasp_the_smallest_weight():
    by = {"0": {"mrr": 1.0, "hits@1": 1.0}, "0.02": {"mrr": 1.0, "hits@1": 1.0}, "0.05": {"mrr": 1.0, "hits@1": 1.0},
          "0.1": {"mrr": 0.88, "hits@1": 0.77}}
    assert T.pick_weight(by) == 0.0
    assert T.pick_weight({**by, "0.5": {"mrr": 1.0, "hits@1": 1.0}, "0": {"mrr": 0.9, "hits@1": 1.0}}) == 0.02
