"""Every offline backbone keeps the contract the rest of claspkit relies on: its registry dim, float32
rows, finite values, batch independence, and unit-length text vectors (what retrieval's cosine assumes)."""
import numpy as np
import pytest

from claspkit.encoders.backbones import create_backbone, list_backbones
from fakes import SR, tone

OFFLINE = [(b["role"], b["name"]) for b in list_backbones() if b["source"] == "offline"]
TEXTS = ["The committee praised the city.", "Les droits de l'homme sont universels.", "Hola", ""]


@pytest.fixture(scope="module")
def waves():
    return [tone(s, 180 + 60 * i, i) for i, s in enumerate([0.7, 2.1, 1.3])]


def test_the_registry_lists_every_offline_role():
    assert {r for r, _ in OFFLINE} == {"speech", "image", "text", "asr"}


@pytest.mark.parametrize("role, name", OFFLINE, ids=[f"{r}/{n}" for r, n in OFFLINE])
def test_offline_backbone_contract(role, name, waves, one_torch_thread):
    enc = create_backbone(role, name)
    spec = next(b for b in list_backbones(role) if b["name"] == name)
    assert enc.role == role and enc.name == name and str(enc.cache_id)
    if role == "asr":
        texts = enc.transcribe(waves[:2])
        assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
        return
    items = TEXTS if role == "text" else waves
    x = np.asarray(enc.encode(items))
    assert x.dtype == np.float32 and x.shape == (len(items), spec["dim"]) and int(enc.dim) == spec["dim"]
    assert np.all(np.isfinite(x))
    alone = np.asarray(enc.encode(items[1:2]))
    np.testing.assert_allclose(alone, x[1:2], atol=2e-3 if role == "speech" else 1e-5)   # batch-independent
    if role == "text":
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
    if role == "speech":
        assert getattr(enc, "sample_rate", SR) == SR
