import sys
import types

import pytest
import torch
from torch import nn

from claspkit.model.authors_checkpoint import load_authors_checkpoint, load_authors_state_dict
from claspkit.errors import DataMissingError, ParamError
from claspkit.model.fusion import count_parameters


def encoder(d, hidden=768):
    return nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.15),
                         nn.Linear(hidden, 576), nn.BatchNorm1d(576), nn.LeakyReLU(), nn.Dropout(0.1),
                         nn.Linear(576, 768))


class AuthorsCLASP(nn.Module):
    """The released layout under names of our own choosing, optionally in another registration order."""

    def __init__(self, s=1024, i=1000, out=768, head_first=False, image_first=False, hidden=768, extra=False):
        super().__init__()
        if head_first:
            self._head()
        if image_first:
            self.spectrogram_net = encoder(i)
        self.hubert_net = encoder(s, hidden)
        if not image_first:
            self.spectrogram_net = encoder(i)
        if not head_first:
            self._head()
        self.fc3 = nn.Linear(800, out)
        if extra:
            self.temperature = nn.Parameter(torch.tensor(0.07))

    def _head(self):
        self.fc1, self.norm, self.fc2 = nn.Linear(1536, 1024), nn.BatchNorm1d(1024), nn.Linear(1024, 800)

    def forward(self, speech, image, order=("s", "i")):
        parts = {"s": self.hubert_net(speech), "i": self.spectrogram_net(image)}
        x = torch.cat([parts[k] for k in order], 1)
        x = nn.functional.leaky_relu(self.norm(self.fc1(x)))
        return self.fc3(nn.functional.leaky_relu(self.fc2(x)))


def trained_like(model, s, i):
    """Non-trivial BatchNorm statistics and affine parameters, then eval mode."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    model.train()
    for _ in range(3):
        model(torch.randn(16, s), torch.randn(16, i))
    return model.eval()


def test_paper_sized_pickled_module_loads_with_trust(tmp_path):
    torch.manual_seed(0)
    theirs = trained_like(AuthorsCLASP(), 1024, 1000)
    path = tmp_path / "clasp.pt"
    torch.save(theirs, path)
    with pytest.raises(ParamError, match="trust=True"):
        load_authors_checkpoint(path)
    ours, config = load_authors_checkpoint(path, trust=True)
    assert config == {"fusion": "concat", "branches": "combined", "speech_dim": 1024, "image_dim": 1000,
                      "out_dim": 768, "dropout_scale": 1.0}
    assert count_parameters(ours) == 6_344_608
    s, i = torch.randn(8, 1024), torch.randn(8, 1000)
    with torch.no_grad():
        assert torch.allclose(ours(s, i), theirs(s, i), atol=1e-6)


@pytest.mark.parametrize("layout", [{"head_first": True}, {"image_first": True}])
def test_registration_order_and_branch_choice(layout):
    torch.manual_seed(0)
    theirs = trained_like(AuthorsCLASP(s=48, i=32, out=24, **layout), 48, 32)
    speech_dim = 48 if layout.get("image_first") else None
    ours, config = load_authors_state_dict(theirs.state_dict(), speech_dim=speech_dim)
    assert (config["speech_dim"], config["image_dim"], config["out_dim"]) == (48, 32, 24)
    s, i = torch.randn(5, 48), torch.randn(5, 32)
    with torch.no_grad():
        assert torch.allclose(ours(s, i), theirs(s, i), atol=1e-6)


def test_swapped_concatenation():
    torch.manual_seed(0)
    theirs = trained_like(AuthorsCLASP(s=40, i=40, out=16), 40, 40)
    s, i = torch.randn(5, 40), torch.randn(5, 40)
    ours, _ = load_authors_state_dict(theirs.state_dict(), swap_concat=True)
    with torch.no_grad():
        assert torch.allclose(ours(s, i), theirs(s, i, order=("i", "s")), atol=1e-6)


def test_plain_state_dict_file_needs_no_trust(tmp_path):
    theirs = trained_like(AuthorsCLASP(s=20, i=10, out=8), 20, 10)
    torch.save(theirs.state_dict(), tmp_path / "sd.pt")
    ours, _ = load_authors_checkpoint(tmp_path / "sd.pt")
    assert torch.equal(ours.head[5].weight, theirs.fc3.weight)
    with pytest.raises(DataMissingError, match="no checkpoint"):
        load_authors_checkpoint(tmp_path / "missing.pt")


def test_class_that_cannot_be_imported_is_stubbed(tmp_path, monkeypatch):
    # the authors' class lived in their notebook: simulate a module that is gone at load time
    mod = types.ModuleType("kaggle_notebook")
    Gone = type("CLASP", (AuthorsCLASP,), {"__module__": "kaggle_notebook"})
    mod.CLASP = Gone
    monkeypatch.setitem(sys.modules, "kaggle_notebook", mod)
    theirs = trained_like(Gone(s=20, i=10, out=8), 20, 10)
    torch.save(theirs, tmp_path / "clasp.pt")
    monkeypatch.delitem(sys.modules, "kaggle_notebook")
    ours, _ = load_authors_checkpoint(tmp_path / "clasp.pt", trust=True)
    s, i = torch.randn(4, 20), torch.randn(4, 10)
    with torch.no_grad():
        assert torch.allclose(ours(s, i), theirs(s, i), atol=1e-6)


def test_mismatches_fail_clearly():
    with pytest.raises(ParamError, match="layer mismatch"):
        load_authors_state_dict(AuthorsCLASP(s=20, i=10, out=8, hidden=512).state_dict())
    with pytest.raises(ParamError, match="temperature"):
        load_authors_state_dict(AuthorsCLASP(s=20, i=10, out=8, extra=True).state_dict())
    ours, _ = load_authors_state_dict(AuthorsCLASP(s=20, i=10, out=8, extra=True).state_dict(), ignore=("temperature",))
    assert ours.config["out_dim"] == 8
    sd = AuthorsCLASP(s=20, i=10, out=8).state_dict()
    with pytest.raises(ParamError, match="not the released concat layout"):
        load_authors_state_dict({k: v for k, v in sd.items() if not k.startswith("fc2")})
    with pytest.raises(ParamError, match="speech_dim=99"):
        load_authors_state_dict(sd, speech_dim=99)
