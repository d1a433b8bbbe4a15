"""bench.adapt: a fixed FOTAQ validation split held out of every adaptation, nested adaptation samples, and a
validation gallery of confident, distinct pseudo-transcripts."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from claspkit.bench import adapt as BA


@pytest.fixture
def fake_fotaq(tmp_path, monkeypatch):
    rows = []
    for g in range(30):
        for i in range(8):
            path = tmp_path / f"{g:02d}{i:04d}P1.wav"
            sf.write(path, np.full(1600 * (1 + i), 0.1, np.float32), 16000)      # clip i lasts 0.1 * (i + 1) s
            rows.append({"path": str(path), "group": f"{g:02d}", "name": path.stem + ".SB"})
    monkeypatch.setattr("claspkit.data.fotaq.load_fotaq", lambda progress=False: pd.DataFrame(rows))
    return pd.DataFrame(rows)


def test_validation_dialogues_never_enter_adaptation_and_samples_nest(fake_fotaq):
    pool, val = BA.fotaq_split()
    assert len(pool) + len(val) == len(fake_fotaq) and set(pool.group).isdisjoint(val.group)
    assert val.group.nunique() == 3                                    # a tenth of 30 dialogues
    again_pool, again_val = BA.fotaq_split()
    assert list(again_pool.path) == list(pool.path) and list(again_val.path) == list(val.path)
    assert list(pool.path[:50]) == list(pool.iloc[:100].path[:50])    # the first n nest


def test_validation_gallery_keeps_confident_distinct_labels(fake_fotaq, isolated_data):
    class Teacher:
        name, scored_cache_id = "fake-asr", "fake-asr/scored-v1"

        def transcribe_scored(self, waves, language=None):
            out = []
            for w in waves:
                i = len(w) // 1600 - 1
                out.append({"text": "only" if i == 7 else f"line number {min(i, 5)}",
                            "avg_logprob": -0.2, "no_speech_prob": 0.0, "compression_ratio": 1.0})
            return out

    _, val = BA.fotaq_split()
    first = val.iloc[:24]
    paths, texts = BA.validation_gallery(val, 24, Teacher())
    assert sorted(texts) == [f"line number {i}" for i in range(6)]          # "only": one word; repeats dropped
    assert all(p in set(first.path) for p in paths)


def test_seed_summary_pools_only_the_runs_of_one_recipe():
    row = lambda s, h: {"system": s, "hits@1": h}  # noqa: E731
    result = {"galleries": {"asterisk-en": {"rows": [
        row("stats voices", 0.3), row("stats voices seed 43", 0.5), row("stats voices seed 44", 0.4),
        row("stats voices + adapt 9 + replay", 0.6), row("stats voices seed 43 + adapt 9 + replay", 0.8),
        row("paper voices", 0.1), row("cascade", 0.99)]}}}
    summary = BA.seed_summary(result)
    assert set(summary) == {"stats voices", "stats voices + adapt 9 + replay"}
    assert summary["stats voices"]["asterisk-en"] == "0.400 ± 0.100 [0.300, 0.500]"
    assert summary["stats voices + adapt 9 + replay"]["asterisk-en"].startswith("0.700 ± 0.141")
