"""Shared fixtures: an isolated data/runs folder and a tiny Brown corpus in NLTK's format."""
from __future__ import annotations

import numpy as np
import pytest

# fakes, ckpt, library and voice for the search-tool tests; nbval's output checks by CPU vendor
pytest_plugins = ["search_fixtures", "nbval_platform"]

# Brown's tagged format: one sentence per line, tab-indented, blank lines between sentences.
FAKE_BROWN = {
    ("ca01", "news"): [
        "The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ./.",
        "The/at city/nn ,/, which/wdt had/hvd charge/nn ,/, was/bedz praised/vbn ./.",
        "6.4/cd ./.",
        "Mayor/nn-tl Allen/np won/vbd easily/rb ./.",
    ],
    ("ca02", "news"): [
        "Voters/nns went/vbd to/in the/at polls/nns early/rb ./.",
        "He/pps asked/vbd ./.",
        "He/pps asked/vbd ./.",
    ],
    ("cj01", "learned"): [
        "The/at value/nn of/in Af/nn is/bez small/jj ./.",
        "Water/nn boils/vbz at/in one/cd hundred/cd degrees/nns ./.",
        " ".join(["word/nn"] * 49) + " ./.",
        "Results/nns (/( see/vb table/nn )/) were/bed clear/jj ./.",
    ],
    ("cp01", "romance"): [
        "She/pps smiled/vbd at/in him/ppo ./.",
        "``/`` Why/wrb not/* ?/. ?/. ''/'' she/pps said/vbd ./.",
        "They/ppss walked/vbd home/nr together/rb --/-- slowly/rb ./.",
    ],
}


def write_fake_brown(root):
    """Write FAKE_BROWN as an NLTK Brown folder (files + cats.txt) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for (fileid, _), lines in FAKE_BROWN.items():
        (root / fileid).write_text("".join(f"\n\n\t{line}\n" for line in lines))
    (root / "cats.txt").write_text("".join(f"{f} {c}\n" for f, c in FAKE_BROWN))
    return root


@pytest.fixture
def fake_brown(tmp_path):
    """A tiny Brown corpus: 4 files, 3 categories, 14 sentences (some to be dropped)."""
    return write_fake_brown(tmp_path / "brown")


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """CLASPKIT_DATA and CLASPKIT_RUNS under tmp_path, so tests never touch data/ or runs/."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    monkeypatch.setenv("CLASPKIT_DATA", str(data))
    monkeypatch.setenv("CLASPKIT_RUNS", str(runs))
    return data


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a shared 2-core machine, waiting threads make tiny models 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def espeak_waves(folder, sentences, voice="espeak:en-us"):
    """16 kHz waveforms of the corpus's espeak-ng engine speaking each sentence: real speech-like bursts.

    The pip library build (claspkit's canonical engine), so no system program or root is needed.
    """
    from claspkit.data.audio import load_audio
    from claspkit.data.tts import get_synthesizer

    out = []
    for i, text in enumerate(sentences):
        path = folder / f"s{i}.wav"
        get_synthesizer("espeak").synthesize(text, voice, path)
        out.append(load_audio(path))
    return out


def write_m4a(path, x, sr):
    """AAC in an MP4 container (what phones record), written with PyAV's FFmpeg: libsndfile cannot read it."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.atleast_2d(np.asarray(x, np.float32).T)              # channels x frames
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "stereo" if len(x) == 2 else "mono"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=stream.layout)
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path

