"""The CLASP fusion encoder: speech-SSL and spectrogram-image features -> the frozen text space.

Layer sizes are those of the authors' released concatenation model (the only hidden sizes that
are known exactly); the input dims follow the chosen backbones and the output dim follows the
text encoder. Every model keeps a JSON-able ``config`` so a checkpoint can rebuild it without
pickling code.

Choices the paper leaves open, made here and kept fixed:

- Concat: each branch ends in the paper's 768-d; the head maps ``cat(branches)`` -> ... -> out_dim,
  so only the head's last Linear follows the text dim.
- Gating: the gated output *is* a branch output (there is no projection after the mix), so the
  branch's final Linear maps 576 -> out_dim and every gate is out_dim wide (exactly the paper's
  768 for a 768-d text encoder). Each branch has its own gates ``W_i, W_f, W_c`` (Linear with bias).
- Single-branch ablations (``branches='speech'|'image'``) keep one branch and size the head for
  one branch: concat's first head Linear takes 768 instead of 1536, gating's softmax mixer spans
  out_dim instead of 2*out_dim. The unused input is ignored and may be None.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import ParamError, choices_hint

BRANCH_DIM = 768          # branch output of the released model
BRANCH_HIDDEN = (768, 576)
HEAD_HIDDEN = (1024, 800)
DROPOUT = (0.15, 0.1)     # the paper's rates, multiplied by dropout_scale

FUSIONS = ("concat", "gating")
BRANCHES = ("combined", "speech", "image")


def branch_mlp(in_dim: int, out_dim: int = BRANCH_DIM, dropout_scale: float = 1.0) -> nn.Sequential:
    """Linear(in,768)-BN-ReLU-Dropout(.15)-Linear(768,576)-BN-LeakyReLU-Dropout(.1)-Linear(576,out)."""
    h1, h2 = BRANCH_HIDDEN
    p1, p2 = (p * dropout_scale for p in DROPOUT)
    return nn.Sequential(
        nn.Linear(in_dim, h1), nn.BatchNorm1d(h1), nn.ReLU(), nn.Dropout(p1),
        nn.Linear(h1, h2), nn.BatchNorm1d(h2), nn.LeakyReLU(), nn.Dropout(p2),
        nn.Linear(h2, out_dim),
    )


def _inputs(branches: str, speech, image) -> list:
    used = {"combined": (("speech", speech), ("image", image)),
            "speech": (("speech", speech),), "image": (("image", image),)}[branches]
    for name, x in used:
        if x is None:
            raise ParamError(f"this {branches!r} fusion model needs the {name} features; pass them (got None)")
    return [x for _, x in used]


class _Fusion(nn.Module):
    """Shared plumbing: the branch modules (named speech_branch/image_branch) and the config."""

    kind = ""

    def __init__(self, speech_dim, image_dim, out_dim, branches, dropout_scale, branch_out):
        super().__init__()
        if branches not in BRANCHES:
            raise ParamError(f"branches {choices_hint(branches, BRANCHES)}")
        dims = {"speech": speech_dim, "image": image_dim}
        names = ["speech", "image"] if branches == "combined" else [branches]
        for n in names + ["out"]:
            d = out_dim if n == "out" else dims[n]
            if not isinstance(d, int) or isinstance(d, bool) or d < 1:
                raise ParamError(f"{n}_dim must be a positive int for branches={branches!r}, got {d!r}; "
                                 "take it from the backbone's .dim")
        if not 0 <= max(DROPOUT) * dropout_scale < 1:
            raise ParamError(f"dropout_scale={dropout_scale} gives a dropout outside [0, 1); "
                             f"use 0 <= dropout_scale < {1 / max(DROPOUT):.3g}")
        self.branch_names = names
        for n in names:
            self.add_module(f"{n}_branch", branch_mlp(dims[n], branch_out, dropout_scale))
        self.config = {"fusion": self.kind, "branches": branches,
                       "speech_dim": speech_dim if "speech" in names else None,
                       "image_dim": image_dim if "image" in names else None,
                       "out_dim": out_dim, "dropout_scale": float(dropout_scale)}

    def branch_outputs(self, speech, image) -> list[torch.Tensor]:
        xs = _inputs(self.config["branches"], speech, image)
        return [getattr(self, f"{n}_branch")(x) for n, x in zip(self.branch_names, xs)]


class ConcatFusion(_Fusion):
    """Branches -> cat -> Linear(768k,1024)-BN-LeakyReLU-Linear(1024,800)-LeakyReLU-Linear(800,out)."""

    kind = "concat"

    def __init__(self, speech_dim=1024, image_dim=1000, out_dim=768, branches="combined", dropout_scale=1.0):
        super().__init__(speech_dim, image_dim, out_dim, branches, dropout_scale, BRANCH_DIM)
        h1, h2 = HEAD_HIDDEN
        self.head = nn.Sequential(
            nn.Linear(BRANCH_DIM * len(self.branch_names), h1), nn.BatchNorm1d(h1), nn.LeakyReLU(),
            nn.Linear(h1, h2), nn.LeakyReLU(), nn.Linear(h2, out_dim),
        )

    def forward(self, speech=None, image=None) -> torch.Tensor:
        return self.head(torch.cat(self.branch_outputs(speech, image), dim=1))


class GatedUnit(nn.Module):
    """x' = sigmoid(W_i x) * tanh(W_c x) + sigmoid(W_f x) * x  (the paper's per-branch gate)."""

    def __init__(self, dim: int):
        super().__init__()
        self.input_gate, self.forget_gate, self.candidate = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return torch.sigmoid(self.input_gate(x)) * torch.tanh(self.candidate(x)) + torch.sigmoid(self.forget_gate(x)) * x


class GatingFusion(_Fusion):
    """Gated branches mixed by a softmax over all concatenated dims: out = sum_k w_k * x_k'."""

    kind = "gating"

    def __init__(self, speech_dim=1024, image_dim=1000, out_dim=768, branches="combined", dropout_scale=1.0):
        super().__init__(speech_dim, image_dim, out_dim, branches, dropout_scale, out_dim)
        k = len(self.branch_names)
        self.gates = nn.ModuleList(GatedUnit(out_dim) for _ in range(k))
        self.mixer = nn.Linear(k * out_dim, k * out_dim)

    def forward(self, speech=None, image=None) -> torch.Tensor:
        gated = [g(x) for g, x in zip(self.gates, self.branch_outputs(speech, image))]
        cat = torch.cat(gated, dim=1)
        w = torch.softmax(self.mixer(cat), dim=1)
        return (w * cat).view(cat.shape[0], len(gated), -1).sum(dim=1)


_CLASSES = {"concat": ConcatFusion, "gating": GatingFusion}
CONFIG_KEYS = ("fusion", "branches", "speech_dim", "image_dim", "out_dim", "dropout_scale")


def build_fusion(config: dict) -> nn.Module:
    """Build from the JSON config {fusion, branches, speech_dim, image_dim, out_dim, dropout_scale}.

    Extra keys (training knobs, backbone names) are ignored, so a whole checkpoint config works.
    """
    fusion = config.get("fusion", "concat")
    if fusion not in _CLASSES:
        raise ParamError(f"fusion {choices_hint(fusion, FUSIONS)}")
    return _CLASSES[fusion](
        speech_dim=config.get("speech_dim"), image_dim=config.get("image_dim"), out_dim=config.get("out_dim"),
        branches=config.get("branches", "combined"), dropout_scale=float(config.get("dropout_scale", 1.0)),
    )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
