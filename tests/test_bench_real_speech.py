"""bench.real_speech: presets compared with every knob equal but the voices; systems scored on the same items."""
import numpy as np
import pytest

from claspkit.bench import real_speech as RS
from claspkit.errors import ClaspkitError, ParamError


def test_compared_presets_differ_only_in_their_voices():
    a, b = RS.preset_params(("small", "voices"), {"n_sentences": 300})
    assert a.voices != b.voices and a.n_sentences == b.n_sentences == 300
    assert a.stage3 == b.stage3 == RS.DEFAULT_STAGE3 and a.speech_backbone == "whisper-base"
    differ = {k for k in a if a[k] != b[k]}
    assert differ <= set(RS.SAME_KNOBS_EXCEPT) and "voices" in differ
    with pytest.raises(ParamError, match="two different presets"):
        RS.preset_params(("small",))


def test_every_system_is_scored_with_paired_differences_on_the_same_items():
    rng = np.random.default_rng(0)
    good = np.eye(20) + 0.01 * rng.standard_normal((20, 20))
    bad = rng.standard_normal((20, 20))
    rows = RS.score_systems({"a": bad, "b": good, "cascade": good}, "cascade", "a", n_boot=50)
    by = {r["system"]: r for r in rows}
    assert by["b"]["hits@1"] == 1.0 and by["a"]["hits@1"] < 0.5 and by["b"]["n"] == 20
    assert by["b"]["vs_baseline"]["hits@1"][0] > 0.5 and by["a"]["vs_cascade"]["hits@1"][0] < -0.5
    assert "vs_baseline" not in by["a"] and "vs_cascade" not in by["cascade"]
    with pytest.raises(ClaspkitError, match="different items"):
        RS.score_systems({"a": bad, "cascade": good[:10, :10]}, "cascade", "a")
