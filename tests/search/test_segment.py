import sys

import numpy as np
import pytest

from conftest import espeak_waves

from claspkit.search import segment as seg
from claspkit.errors import ChecksumError, ParamError
from claspkit.search.segment import SegmentParams, segment, segments_from_probs

SR = 16000
SENTENCES = ["The steam engine changed how people worked.",
             "Rivers were the first roads of trade.",
             "Please close the window before you leave."]


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    """Three espeak-ng utterances as 16 kHz waveforms (real speech-like bursts)."""
    return espeak_waves(tmp_path_factory.mktemp("voice"), SENTENCES)


def silence(seconds):
    return np.zeros(int(seconds * SR), np.float32)


def test_bursts_separated_by_silence_give_one_segment_each(voice):
    parts, truth, t = [silence(1.0)], [], 1.0
    for w in voice:
        active = np.flatnonzero(np.abs(w) > 0.02)
        truth.append((t + active[0] / SR, t + active[-1] / SR))
        parts += [w, silence(1.5)]
        t += len(w) / SR + 1.5
    audio = np.concatenate(parts)
    got = segment(audio)
    assert len(got) == len(voice)
    for (s, e), (ts, te) in zip(got, truth):
        assert s <= ts + 0.05 and e >= te - 0.05        # covers the burst...
        assert s >= ts - 0.5 and e <= te + 0.5          # ...and not much of the silence
    assert all(a[1] <= b[0] for a, b in zip(got, got[1:]))
    assert segment(audio) == got                         # deterministic


def test_long_speech_is_split_at_pauses_below_max_length(voice):
    audio = np.concatenate([w for _ in range(4) for w in (*voice, silence(0.25))])   # ~30 s, short pauses
    got = segment(audio, max_s=6.0)
    assert len(got) >= 5
    assert all(0 < e - s <= 6.0 + 1e-6 for s, e in got)
    assert all(a[1] <= b[0] for a, b in zip(got, got[1:]))
    covered = sum(e - s for s, e in got)
    assert covered > 0.8 * len(audio) / SR


def test_continuous_speech_without_pauses_is_cut_into_equal_parts():
    probs = np.ones(int(40 * SR / seg.FRAME), np.float32)
    got = segments_from_probs(probs, 40 * SR, SegmentParams(max_s=15.0))
    assert len(got) >= 3
    assert all(e - s <= 15.0 + 1e-6 for s, e in got)
    assert got[0][0] == 0.0 and got[-1][1] == pytest.approx(40.0, abs=0.01)


def frames(seconds):
    return int(round(seconds * SR / seg.FRAME))


def test_short_piece_merges_into_near_neighbour_but_a_lone_one_is_kept():
    # 3 s speech, 0.5 s pause, 0.5 s blip, 4 s pause, 0.5 s lone blip, 2 s silence
    pattern = [(1, 3.0), (0, 0.5), (1, 0.5), (0, 4.0), (1, 0.5), (0, 2.0)]
    probs = np.concatenate([np.full(frames(d), 0.95 if v else 0.01, np.float32) for v, d in pattern])
    n = len(probs) * seg.FRAME
    got = segments_from_probs(probs, n, SegmentParams(min_s=1.0, merge_gap_s=1.0, pad_s=0.0))
    assert len(got) == 2
    assert got[0][0] == pytest.approx(0.0, abs=0.05) and got[0][1] == pytest.approx(4.0, abs=0.1)
    assert got[1][1] - got[1][0] == pytest.approx(0.5, abs=0.1)
    no_merge = segments_from_probs(probs, n, SegmentParams(min_s=1.0, merge_gap_s=0.2, pad_s=0.0))
    assert len(no_merge) == 3


def test_silence_and_empty_input_give_no_segments():
    assert segment(silence(3.0)) == []
    assert segment(np.zeros(0, np.float32)) == []
    assert segment(silence(0.01)) == []


def test_bad_parameters_and_rate_are_refused():
    with pytest.raises(ParamError, match="16000"):
        segment(silence(1.0), sr=8000)
    with pytest.raises(ParamError, match="min_s"):
        SegmentParams(max_s=5, min_s=6)
    with pytest.raises(ParamError, match="max_s"):
        segment(silence(1.0), max_s=0.5)
    assert SegmentParams().key() != SegmentParams(max_s=10).key()


def test_modified_vad_model_is_refused(monkeypatch):
    seg._vad_model.cache_clear()
    monkeypatch.setattr(seg, "VAD_SHA256", "0" * 64)
    try:
        with pytest.raises(ChecksumError, match="reinstall"):
            segment(silence(1.0))
    finally:
        seg._vad_model.cache_clear()


def test_importing_the_vad_keeps_torch_threads(monkeypatch):
    """silero_vad's package import calls torch.set_num_threads(1); the encoders must keep theirs."""
    import torch

    before = torch.get_num_threads()
    for name in [m for m in sys.modules if m == "silero_vad" or m.startswith("silero_vad.")]:
        monkeypatch.delitem(sys.modules, name)          # so the package import runs again
    seg._vad_model.cache_clear()
    try:
        torch.set_num_threads(3)
        segment(silence(1.0))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
        seg._vad_model.cache_clear()
