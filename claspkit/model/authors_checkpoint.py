"""Bring the authors' released CLASP model into our ConcatFusion, by layer order and shape.

The authors published ``torch.save(model)``: a whole pickled module whose class lived in a Kaggle
notebook. We do not know their attribute names, only the layout (NOTES: two branches
Linear-BN-Linear-BN-Linear and a head Linear(1536,1024)-BN-Linear(1024,800)-Linear(800,768)), so the
mapping walks their state dict in registration order, groups tensors into Linear / BatchNorm1d layers,
finds the four head layers by their unique shapes (Linear 1536->1024, BN 1024, Linear 1024->800,
Linear 800->out), takes the remaining layers, in order, as two contiguous 5-layer branches and checks
every tensor's shape against ours. Anything else fails with the offending names.

Assumed (not recorded in a state dict): the head concatenates [speech, image]; the speech branch is
the first registered one unless ``speech_dim`` says otherwise. ``swap_concat=True`` handles a forward
that concatenated [image, speech].
"""
from __future__ import annotations

import pickle
import types
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from claspkit.errors import DataMissingError, ParamError
from claspkit.model.fusion import BRANCH_DIM, HEAD_HIDDEN, ConcatFusion
from claspkit.paths import display_path

__all__ = ["load_authors_state_dict", "load_authors_checkpoint"]

_LINEAR = {"weight", "bias"}
_BN = {"weight", "bias", "running_mean", "running_var"}


def _layers(state_dict: Mapping, ignore=()) -> list[tuple[str, str, dict]]:
    """[(prefix, 'linear'|'bn', {suffix: tensor})] in registration order; unknown groups are an error."""
    groups: dict[str, dict] = {}
    for key, t in state_dict.items():
        if any(key == p or key.startswith(p.rstrip(".") + ".") for p in ignore):
            continue
        prefix, _, suffix = key.rpartition(".")
        groups.setdefault(prefix, {})[suffix] = t
    out = []
    for prefix, ts in groups.items():
        names = set(ts)
        if names == _LINEAR and ts["weight"].ndim == 2:
            out.append((prefix, "linear", ts))
        elif _BN <= names <= _BN | {"num_batches_tracked"} and ts["weight"].ndim == 1:
            out.append((prefix, "bn", ts))
        else:
            raise ParamError(f"unexpected tensors under {prefix!r}: {sorted(names)}; the released model has only "
                             f"Linear (with bias) and BatchNorm1d layers. Pass ignore=({prefix!r},) if it is an extra")
    return out


def _describe(layer) -> str:
    prefix, kind, ts = layer
    if kind == "linear":
        return f"{prefix or '<root>'}: Linear({ts['weight'].shape[1]}->{ts['weight'].shape[0]})"
    return f"{prefix or '<root>'}: BatchNorm1d({ts['weight'].shape[0]})"


def load_authors_state_dict(state_dict: Mapping, speech_dim: int | None = None, swap_concat: bool = False,
                            ignore=()) -> tuple[ConcatFusion, dict]:
    """Map the authors' concat-model state dict onto a ConcatFusion; returns (model in eval mode, config)."""
    theirs = _layers(state_dict, ignore)
    listing = "; ".join(map(_describe, theirs))
    h1, h2 = HEAD_HIDDEN
    head_sig = [("linear", (h1, 2 * BRANCH_DIM)), ("bn", (h1,)), ("linear", (h2, h1)), ("linear", (None, h2))]
    head_idx = []
    for kind, shape in head_sig:
        hits = [i for i, (_, k, ts) in enumerate(theirs) if k == kind and all(
            w in (None, d) for w, d in zip(shape, ts["weight"].shape))]
        if len(hits) != 1:
            raise ParamError(f"not the released concat layout: need exactly one {kind} of weight shape {shape} "
                             f"in the head, found {len(hits)}; their layers: {listing}")
        head_idx.append(hits[0])
    head = [theirs[i] for i in head_idx]
    rest = [layer for i, layer in enumerate(theirs) if i not in head_idx]
    if len(rest) != 10 or any(b[0][1] != "linear" for b in (rest[:5], rest[5:])):
        raise ParamError(f"not the released concat layout: besides the head, need two branches of 5 layers "
                         f"(Linear, BN, Linear, BN, Linear), each registered contiguously; their layers: {listing}")
    branches = [rest[:5], rest[5:]]
    ins = [b[0][2]["weight"].shape[1] for b in branches]
    if speech_dim is not None:
        if ins.count(speech_dim) != 1:
            raise ParamError(f"speech_dim={speech_dim} must match exactly one branch input (found {ins}); "
                             "pass speech_dim=None to take the first registered branch as speech")
        branches = branches if ins[0] == speech_dim else branches[::-1]
    speech, image = branches
    model = ConcatFusion(speech_dim=speech[0][2]["weight"].shape[1], image_dim=image[0][2]["weight"].shape[1],
                         out_dim=head[-1][2]["weight"].shape[0])
    ours = _layers(model.state_dict())
    mapped = {}
    for mine, their in zip(ours, speech + image + head):
        if mine[1] != their[1] or any(t.shape != their[2][k].shape for k, t in mine[2].items() if k in their[2]):
            raise ParamError(f"layer mismatch: ours {_describe(mine)} vs theirs {_describe(their)}; "
                             f"their layers: {listing}")
        for k, t in mine[2].items():
            mapped[f"{mine[0]}.{k}"] = their[2].get(k, t).detach().clone()
    if swap_concat:
        w = mapped["head.0.weight"]
        mapped["head.0.weight"] = torch.cat([w[:, BRANCH_DIM:], w[:, :BRANCH_DIM]], dim=1)
    model.load_state_dict(mapped)
    return model.eval(), dict(model.config)


def _stub_unpickler():
    """A pickle module whose Unpickler replaces classes it cannot import with empty nn.Module subclasses.

    The authors' class was defined in a notebook (``__main__``); its state (submodules, parameters,
    buffers) is all ``state_dict()`` needs, so a stand-in class with the same name is enough.
    """
    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (AttributeError, ImportError):
                return type(name, (nn.Module,), {"__module__": module})
    module = types.ModuleType("claspkit_stub_pickle")
    module.__dict__.update({k: getattr(pickle, k) for k in ("load", "loads", "dump", "dumps", "Pickler")})
    module.Unpickler = Unpickler
    return module


def _state_dict_of(obj, path) -> Mapping:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ParamError(f"{display_path(path)} holds a {type(obj).__name__}, neither a module nor a state dict")


def load_authors_checkpoint(path, trust: bool = False, **kw) -> tuple[ConcatFusion, dict]:
    """Load the authors' released file and map it (see :func:`load_authors_state_dict` for ``kw``).

    A plain state dict loads safely (``weights_only=True``). Their release is a whole pickled module, and
    unpickling can execute arbitrary code embedded in the file, so it is only done with ``trust=True``
    -- pass it only for a file from a source you trust. Classes the pickle names but Python cannot
    import (the authors' notebook class) are replaced by empty stand-ins: only their weights are used.
    """
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(f"no checkpoint file at {display_path(path)}; download the authors' release there")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust:
            raise ParamError(f"{display_path(path)} is a pickled module, not plain weights; unpickling it can run "
                             "arbitrary code. Pass trust=True only if you trust its source") from err
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_stub_unpickler())
    return load_authors_state_dict(_state_dict_of(obj, path), **kw)
