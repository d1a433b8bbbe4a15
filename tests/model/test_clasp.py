"""claspkit.CLASP: from_pretrained / save_pretrained / encode_speech / encode_text / similarity."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from claspkit import CLASP
from claspkit.model import clasp as M
from claspkit.errors import DataMissingError, ParamError
from fakes import SR, FakeFrameEncoder, FakeImage, FakeText, attention_checkpoint, concat_checkpoint, fake_factory, tone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fakes(monkeypatch):
    options = {}
    monkeypatch.setattr(M, "create_encoder", fake_factory(options))
    return options


@pytest.fixture
def clips(tmp_path):
    paths = []
    for i, s in enumerate([0.4, 1.2, 0.7]):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, tone(s, 200 + 90 * i, i), SR, subtype="PCM_16")
        paths.append(p)
    return paths


def test_text_and_speech_vectors_are_unit_float32_and_batch_independent(tmp_path, fakes, clips):
    from claspkit.data.audio import load_audio

    m = CLASP.from_pretrained(concat_checkpoint(tmp_path / "m"))
    t = m.encode_text(["hello", "world"])
    assert t.shape == (2, 8) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, atol=1e-6)
    assert m.encode_text("hello").shape == (1, 8) and m.encode_text([]).shape == (0, 8)
    s = m.encode_speech(clips, batch_size=2)
    assert s.shape == (3, 8) and s.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(m.encode_speech(clips[1]), s[1:2], atol=1e-6)            # alone == in a batch
    np.testing.assert_allclose(m.encode_speech([load_audio(p) for p in clips]), s, atol=1e-6)  # waves == files
    sim = m.similarity(t, s)
    assert sim.shape == (2, 3) and np.all(np.abs(sim) <= 1 + 1e-6)
    with pytest.raises(ParamError, match="strings"):
        m.encode_text([3])
    assert repr(m) == "CLASP(concat, speech=fake-speech + image=fake-image + text=fake-text, dim=8)"


def test_only_the_branches_the_head_uses_are_built(tmp_path, fakes):
    m = CLASP.from_pretrained(concat_checkpoint(tmp_path / "s", branches="speech"))
    assert set(m.encoders) == {"speech"} and m.backbones["image"] is None
    with pytest.raises(ParamError, match="unknown image runtime"):
        CLASP.from_pretrained(tmp_path / "s", image_runtime="gpu")


def test_save_pretrained_round_trips_with_a_model_card(tmp_path, fakes, clips):
    m = CLASP.from_pretrained(concat_checkpoint(tmp_path / "m"))
    out = m.save_pretrained(tmp_path / "saved", card={"training data": "36 tone clips",
                                                      "test metrics": {"HITS@1": 0.5}})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    again = CLASP.from_pretrained(out)
    np.testing.assert_allclose(again.encode_speech(clips), m.encode_speech(clips), atol=1e-6)
    card = (out / "README.md").read_text()
    for needle in ("| speech | `fake-speech` |", "| fusion head | `concat` (combined) |", "## Training data",
                   "36 tone clips", "- HITS@1: 0.5", "- `loss`: contrastive", "from claspkit import CLASP"):
        assert needle in card, needle
    assert json.loads((out / "config.json").read_text())["text_backbone"] == "fake-text"
    assert again.identity["checkpoint_sha256"] == m.identity["checkpoint_sha256"]


def test_hub_ids_download_and_offline_says_what_to_do(tmp_path, fakes, monkeypatch):
    import huggingface_hub

    folder = concat_checkpoint(tmp_path / "hub-copy")
    asked = {}

    def fake_download(repo_id, revision=None, cache_dir=None, allow_patterns=None):
        asked.update(repo=repo_id, revision=revision, patterns=allow_patterns)
        return str(folder)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    m = CLASP.from_pretrained("someone/clasp-small", revision="v1")
    assert asked == {"repo": "someone/clasp-small", "revision": "v1",
                     "patterns": ["config.json", "*.safetensors", "README.md"]} and m.dim == 8

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DataMissingError, match="someone/clasp-small.*network is unreachable.*local path"):
        CLASP.from_pretrained("someone/clasp-small")
    (tmp_path / "runs").mkdir()
    with pytest.raises(DataMissingError, match="no checkpoint at"):     # a local-looking path is never a hub id
        CLASP.from_pretrained("runs/missing")
    with pytest.raises(DataMissingError, match="neither a model folder"):
        CLASP.from_pretrained("not a repo id")


def test_the_authors_pickled_release_loads_with_trust(tmp_path, monkeypatch):
    from test_authors_checkpoint import AuthorsCLASP, trained_like

    made = {}

    def create(role, name, **kw):
        made[role] = name
        return {"speech": lambda: FakeFrameEncoder(dim=1024), "image": lambda: FakeFrameEncoder(dim=1000),
                "text": lambda: type("T", (FakeText,), {"dim": 768})()}[role]()

    monkeypatch.setattr(M, "create_encoder", create)
    torch.manual_seed(0)
    path = tmp_path / "clasp.pt"
    torch.save(trained_like(AuthorsCLASP(), 1024, 1000), path)
    with pytest.raises(ParamError, match="trust=True"):
        CLASP.from_pretrained(path)
    m = CLASP.from_pretrained(path, trust=True)
    assert made == M.AUTHORS_BACKBONES and m.dim == 768 and m.config["fusion"] == "concat"
    assert "the authors' release (clasp.pt)" in m.model_card()


@pytest.mark.parametrize("fusion", ["attention", "stats"])
def test_a_frame_head_checkpoint_gets_frames(tmp_path, fakes, clips, fusion):
    from claspkit.model.inference import embed_speech

    from claspkit.data.audio import load_audio

    m = CLASP.from_pretrained(attention_checkpoint(tmp_path / "att", fusion=fusion))
    assert fakes["speech"]["frame_pool"] == 4 and m.frames
    waves = [load_audio(p) for p in clips]
    expect = embed_speech(m.head, FakeFrameEncoder().encode_frames(waves), FakeImage().encode(waves))
    np.testing.assert_allclose(m.encode_speech(clips), expect, atol=1e-6)
