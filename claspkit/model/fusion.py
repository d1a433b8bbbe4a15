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

Beyond the paper, ``attention`` reads the speech encoder's frame sequence (``claspkit.encoders.frames``)
instead of its mean, because the mean-pooled heads lose badly to transcribe-then-search on the full
gallery (HITS@1 0.60 vs 0.91), and one transformer layer over 4x-pooled Whisper frames beat a
mean-pooled MLP in a first experiment outside the project (0.77 vs 0.68 on 5K pairs; on the small
preset's 2,400 pairs it is not yet ahead of the gating head: ``claspkit.bench.retrieval``). Frames -> Linear(d_model)
+ sinusoidal positions, a learned CLS token in front, pre-norm TransformerEncoder layers with a key
padding mask from the lengths, the CLS output (concatenated with the image branch's 768-d vector for
``branches='combined'``) -> Linear(out_dim). Padding never reaches a valid position, so an item's
embedding is the same alone and in a padded batch (to float rounding).

Also beyond the paper, ``stats`` pools the same frames into their mean and standard deviation over
time (x-vector statistics pooling) and maps them, with the image vector, through one wide, heavily
dropped-out MLP. Measured on the medium preset's cached features (8,000 pairs, 1,000-item gallery) in a
throwaway sweep before it was built: the mean alone through a 1024-wide MLP reached HITS@1 0.70 (the paper's
gating head 0.695), mean + std 0.75, and widening with more dropout 0.78 (2048, p 0.6) and 0.79 (4096,
p 0.7). Learned query pooling (0.71) and a transformer layer over the frames (0.72-0.74) did no better: on
this much data the heads memorise, and what helps is a richer fixed summary with strong regularisation.
The inputs are standardised by a BatchNorm without affine weights, so no feature scale needs fitting.
``stats_members`` > 1 makes the head an ensemble: that many such MLPs over the same standardised input,
each trained on its own loss (``member_outputs``; their dropout masks and initialisations differ), whose
unit-length outputs are averaged at inference, so the model is still one vector per utterance.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from claspkit.constants import FUSIONS
from claspkit.errors import ParamError, choices_hint

__all__ = [
    "BRANCH_DIM", "BRANCH_HIDDEN", "HEAD_HIDDEN", "DROPOUT", "BRANCHES", "ATTENTION_DEFAULTS", "ATTENTION_KEYS",
    "ATTENTION_DROPOUT", "STATS_DEFAULTS", "STATS_KEYS", "STATS_OPTIONAL", "STATS_DROPOUT", "branch_mlp",
    "ConcatFusion", "GatedUnit",
    "GatingFusion", "sinusoid", "AttentionFusion", "masked_mean_std", "StatsFusion", "CONFIG_KEYS", "config_keys",
    "build_fusion", "count_parameters",
]

BRANCH_DIM = 768          # branch output of the released model
BRANCH_HIDDEN = (768, 576)
HEAD_HIDDEN = (1024, 800)
DROPOUT = (0.15, 0.1)     # the paper's rates, multiplied by dropout_scale

BRANCHES = ("combined", "speech", "image")
ATTENTION_DEFAULTS = {"attention_dim": 256, "attention_layers": 1, "attention_heads": 4}
ATTENTION_KEYS = tuple(ATTENTION_DEFAULTS)
ATTENTION_DROPOUT = 0.1   # inside the transformer layers, multiplied by dropout_scale
STATS_DEFAULTS = {"stats_hidden": 4096, "stats_members": 1}
STATS_KEYS = ("stats_hidden",)        # in every stats config
STATS_OPTIONAL = ("stats_members",)   # in a stats config only when not the default: older configs stay as they were
STATS_DROPOUT = (0.35, 0.7)  # on the pooled input and on the hidden layer, multiplied by dropout_scale


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


def _check_sizes(branches, speech_dim, image_dim, out_dim, dropout_scale) -> list[str]:
    """The branch names ``branches`` uses, after checking their dims and the dropout scale."""
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
    return names


def _base_config(kind, branches, names, speech_dim, image_dim, out_dim, dropout_scale) -> dict:
    return {"fusion": kind, "branches": branches,
            "speech_dim": speech_dim if "speech" in names else None,
            "image_dim": image_dim if "image" in names else None,
            "out_dim": out_dim, "dropout_scale": float(dropout_scale)}


class _Fusion(nn.Module):
    """Shared plumbing: the branch modules (named speech_branch/image_branch) and the config."""

    kind = ""

    def __init__(self, speech_dim, image_dim, out_dim, branches, dropout_scale, branch_out):
        super().__init__()
        names = _check_sizes(branches, speech_dim, image_dim, out_dim, dropout_scale)
        dims = {"speech": speech_dim, "image": image_dim}
        self.branch_names = names
        for n in names:
            self.add_module(f"{n}_branch", branch_mlp(dims[n], branch_out, dropout_scale))
        self.config = _base_config(self.kind, branches, names, speech_dim, image_dim, out_dim, dropout_scale)

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
        self.input_gate, self.forget_gate, self.candidate = (nn.Linear(dim, dim), nn.Linear(dim, dim),
                                                             nn.Linear(dim, dim))

    def forward(self, x):
        return (torch.sigmoid(self.input_gate(x)) * torch.tanh(self.candidate(x))
                + torch.sigmoid(self.forget_gate(x)) * x)


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


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """The transformer's fixed sine/cosine positions, (length, dim): no maximum length to outgrow."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class AttentionFusion(nn.Module):
    """Speech frames -> CLS-pooled pre-norm transformer (+ the image branch) -> out_dim; see the module docstring.

    Called as ``model(frames, image, lengths=lengths)`` with frames (B, T, speech_dim) zero-padded
    after each item's ``lengths[b]`` valid steps (``claspkit.encoders.frames.Frames.pad``).
    """

    kind = "attention"

    def __init__(self, speech_dim=512, image_dim=1280, out_dim=384, branches="combined", dropout_scale=1.0,
                 attention_dim=256, attention_layers=1, attention_heads=4):
        super().__init__()
        if branches == "image":
            raise ParamError("the attention head attends over speech frames, so branches='image' has nothing to "
                             "attend to; use branches='combined' or 'speech' (or concat/gating for the "
                             "spectrogram-only ablation)")
        names = _check_sizes(branches, speech_dim, image_dim, out_dim, dropout_scale)
        sizes = {"attention_dim": attention_dim, "attention_layers": attention_layers,
                 "attention_heads": attention_heads}
        for k, v in sizes.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParamError(f"{k} must be a positive int, got {v!r} (default {ATTENTION_DEFAULTS[k]})")
        if attention_dim % attention_heads or attention_dim % 2:
            raise ParamError(f"attention_dim ({attention_dim}) must be even and divisible by attention_heads "
                             f"({attention_heads}), e.g. 256 with 4 heads")
        d, p = attention_dim, ATTENTION_DROPOUT * dropout_scale
        self.branch_names = names
        self.frame_proj = nn.Linear(speech_dim, d)
        self.cls = nn.Parameter(torch.empty(1, 1, d).normal_(std=0.02))
        layer = nn.TransformerEncoderLayer(d, attention_heads, dim_feedforward=4 * d, dropout=p, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, attention_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        if "image" in names:
            self.image_branch = branch_mlp(image_dim, BRANCH_DIM, dropout_scale)
        self.head = nn.Linear(d + (BRANCH_DIM if "image" in names else 0), out_dim)
        self.config = {**_base_config(self.kind, branches, names, speech_dim, image_dim, out_dim, dropout_scale),
                       **sizes}

    def forward(self, speech=None, image=None, lengths=None) -> torch.Tensor:
        speech, *rest = _inputs(self.config["branches"], speech, image)
        lengths = _frame_input(speech, lengths, "attention")
        b, t, _ = speech.shape
        pad = torch.arange(t, device=speech.device)[None, :] >= lengths.to(speech.device)[:, None]
        x = self.frame_proj(speech) + sinusoid(t, self.cls.shape[-1]).to(speech.device)
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)
        mask = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=pad.device), pad], dim=1)
        h = self.encoder(x, src_key_padding_mask=mask)[:, 0]
        if rest:
            h = torch.cat([h, self.image_branch(rest[0])], dim=1)
        return self.head(h)


def masked_mean_std(frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over each item's first ``lengths[b]`` steps: padding never counts."""
    t = frames.shape[1]
    valid = (torch.arange(t, device=frames.device)[None, :] < lengths.to(frames.device)[:, None]).to(frames.dtype)
    valid = valid[..., None]
    n = valid.sum(dim=1).clamp_min(1.0)
    mean = (frames * valid).sum(dim=1) / n
    var = (((frames - mean[:, None]) ** 2) * valid).sum(dim=1) / n
    return mean, var.clamp_min(1e-8).sqrt()


def _frame_input(speech: torch.Tensor, lengths, head: str) -> torch.Tensor:
    if speech.ndim != 3:
        raise ParamError(f"the {head} head takes frame features (batch, time, dim), got shape "
                         f"{tuple(speech.shape)}; pass claspkit.encoders.frames.Frames (pipeline.frame_features), "
                         "not the mean-pooled features")
    return torch.full((speech.shape[0],), speech.shape[1]) if lengths is None else lengths


class StatsFusion(nn.Module):
    """Speech frames -> [mean, std over time] (+ the image vector) -> BatchNorm -> one wide MLP (or an ensemble
    of ``stats_members``) -> out_dim.

    Called like :class:`AttentionFusion`: ``model(frames, image, lengths=lengths)``. See the module docstring.
    """

    kind = "stats"

    def __init__(self, speech_dim=512, image_dim=1280, out_dim=384, branches="combined", dropout_scale=1.0,
                 stats_hidden=4096, stats_members=1):
        super().__init__()
        if branches == "image":
            raise ParamError("the stats head pools speech frames, so branches='image' has nothing to pool; use "
                             "branches='combined' or 'speech' (or concat/gating for the spectrogram-only ablation)")
        names = _check_sizes(branches, speech_dim, image_dim, out_dim, dropout_scale)
        for k, v in (("stats_hidden", stats_hidden), ("stats_members", stats_members)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParamError(f"{k} must be a positive int, got {v!r} (default {STATS_DEFAULTS[k]})")
        if not max(STATS_DROPOUT) * dropout_scale < 1:
            raise ParamError(f"dropout_scale={dropout_scale} gives the stats head a dropout >= 1 "
                             f"(its rates are {STATS_DROPOUT}); use dropout_scale < {1 / max(STATS_DROPOUT):.3g}")
        p_in, p_hidden = (p * dropout_scale for p in STATS_DROPOUT)
        self.branch_names = names
        in_dim = 2 * speech_dim + (image_dim if "image" in names else 0)
        self.norm = nn.BatchNorm1d(in_dim, affine=False)

        def mlp():
            return nn.Sequential(nn.Dropout(p_in), nn.Linear(in_dim, stats_hidden), nn.GELU(),
                                 nn.LayerNorm(stats_hidden), nn.Dropout(p_hidden), nn.Linear(stats_hidden, out_dim))

        if stats_members == 1:
            self.mlp = mlp()     # the single head's parameter names, as its checkpoints have them
        else:
            self.members = nn.ModuleList(mlp() for _ in range(stats_members))
        self.config = {**_base_config(self.kind, branches, names, speech_dim, image_dim, out_dim, dropout_scale),
                       "stats_hidden": stats_hidden}
        if stats_members > 1:    # a single head's config (and so its checkpoints' fingerprints) stays as it was
            self.config["stats_members"] = stats_members

    @property
    def n_members(self) -> int:
        return self.config.get("stats_members", 1)

    @staticmethod
    def pool(speech: torch.Tensor, lengths=None) -> torch.Tensor:
        """(batch, 2 * speech_dim): the frames' [mean, std], the head's only view of them. It has no weights,
        so training computes it once per item (``pooled=True`` then passes it instead of frames)."""
        return torch.cat(masked_mean_std(speech, _frame_input(speech, lengths, "stats")), dim=1)

    def member_outputs(self, speech=None, image=None, lengths=None, pooled: bool = False) -> torch.Tensor:
        """(members, batch, out_dim): every member's output, each trained on its own loss."""
        speech, *rest = _inputs(self.config["branches"], speech, image)
        if pooled:
            if speech.ndim != 2 or speech.shape[1] != 2 * self.config["speech_dim"]:
                raise ParamError(f"pooled=True takes StatsFusion.pool's (batch, {2 * self.config['speech_dim']}) "
                                 f"output, got shape {tuple(speech.shape)}")
        else:
            speech = self.pool(speech, lengths)
        x = self.norm(torch.cat([speech, *rest], dim=1))
        return torch.stack([m(x) for m in (self.members if self.n_members > 1 else [self.mlp])])

    def forward(self, speech=None, image=None, lengths=None, pooled: bool = False) -> torch.Tensor:
        out = self.member_outputs(speech, image, lengths, pooled)
        if self.n_members == 1:
            return out[0]
        return nn.functional.normalize(out, dim=-1).mean(dim=0)


_CLASSES = {"concat": ConcatFusion, "gating": GatingFusion, "attention": AttentionFusion, "stats": StatsFusion}
CONFIG_KEYS = ("fusion", "branches", "speech_dim", "image_dim", "out_dim", "dropout_scale")


def config_keys(config: dict) -> tuple[str, ...]:
    """The keys of a fusion model's config: CONFIG_KEYS, plus the attention or stats sizes for those heads."""
    if config.get("fusion") == "stats":
        return CONFIG_KEYS + STATS_KEYS + tuple(k for k in STATS_OPTIONAL if k in config)
    return CONFIG_KEYS + (ATTENTION_KEYS if config.get("fusion") == "attention" else ())


def build_fusion(config: dict) -> nn.Module:
    """Build from the JSON config {fusion, branches, speech_dim, image_dim, out_dim, dropout_scale}
    (plus attention_dim, attention_layers, attention_heads for ``fusion='attention'``, stats_hidden for
    ``fusion='stats'``).

    Extra keys (training knobs, backbone names) are ignored, so a whole checkpoint config works.
    """
    fusion = config.get("fusion", "concat")
    if fusion not in _CLASSES:
        raise ParamError(f"fusion {choices_hint(fusion, FUSIONS)}")
    sizes = {"attention": ATTENTION_DEFAULTS, "stats": STATS_DEFAULTS}.get(fusion, {})
    extra = {k: config.get(k, v) for k, v in sizes.items()}
    return _CLASSES[fusion](
        speech_dim=config.get("speech_dim"), image_dim=config.get("image_dim"), out_dim=config.get("out_dim"),
        branches=config.get("branches", "combined"), dropout_scale=float(config.get("dropout_scale", 1.0)), **extra,
    )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
