"""Training the fusion encoder on cached features: seeded, deterministic, resumable.

The backbones are frozen, so a run only needs three float32 arrays per split
(``{"speech", "image", "text"}``, one row per item) and trains in seconds per epoch on a CPU. The
``attention`` and ``stats`` heads take frame features for "speech" instead (``claspkit.encoders.frames.Frames``,
ragged): each batch is padded to its longest item and the lengths build the padding mask; everything else
(seeds, batch order, resumption) is the same.

Recipe (every knob from ``claspkit.config.SCHEMA``; the paper's values in brackets): Adam with
``lr`` [5e-6], ``batch_size`` [32], StepLR(``step_size`` [100], ``gamma`` [0.4]) stepped per epoch,
up to ``epochs`` [400], early stopping after ``patience`` [10] epochs without a lower validation loss,
the best weights kept. Each epoch reseeds torch (dropout) and draws its batch order from its own
``torch.Generator``, both derived from (seed, epoch): a run resumed at any epoch replays exactly what an
uninterrupted run does. The last incomplete training batch is dropped (as in CLIP training; each epoch
draws a fresh permutation, so no item is dropped for good) -- it keeps every contrastive batch full-size.
The validation loss averages every validation item, in fixed order, in batches of ``batch_size``
(the paper validated in batches of 16; a contrastive loss depends on the batch size, so ours uses one).

Checkpoints (written as training goes, resumable) are ``claspkit.model.checkpoint``'s folders; inference on a
trained head is ``claspkit.model.inference``.

Knobs added after the paper's heads (``scale_lr``, ``label_smoothing``, ``length_batches``; ``frame_pool``
and the attention or stats sizes) enter the training config only when they are used (``scale_lr`` set;
``label_smoothing`` above 0; a frame head, with ``length_batches`` True; ``stats_members`` above 1), so every
earlier configuration keeps its exact config, fingerprint and checkpoints. ``scale_lr`` gives a learnable
logit scale its own Adam parameter group (CLIP-style: the temperature often wants a different rate).
``length_batches`` draws the attention head's training batches among items of similar length
(``_length_batches``): padding to the longest item then wastes less. ``frame_mask_time`` /
``frame_mask_channels`` (with ``frame_masks``) zero random spans of a frame head's training frames, batch by
batch (``claspkit.data.augment.masking``), from a generator seeded per (seed, epoch); validation never is.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from claspkit.config import SCHEMA
from claspkit.errors import ClaspkitError, ParamError
from claspkit.encoders.frames import Frames, as_frames
from claspkit.constants import FRAME_FUSIONS
from claspkit.model.fusion import ATTENTION_KEYS, STATS_DEFAULTS, STATS_KEYS, STATS_OPTIONAL, build_fusion
from claspkit.model.checkpoint import MODEL_FILE, STATE_FILE, read_checkpoint_config, write_checkpoint
from claspkit.model.losses import build_loss
from claspkit.paths import display_path
from claspkit.progress import progress_bar

__all__ = [
    "TRAIN_KEYS", "ATTENTION_TRAIN_KEYS", "STATS_TRAIN_KEYS", "BACKBONE_KEYS", "RESUME_MAY_CHANGE",
    "TrainResult", "training_config", "train",
]

TRAIN_KEYS = ("seed", "fusion", "branches", "dropout_scale", "loss", "tau", "learnable_scale", "tau_bug",
              "huber_delta", "lr", "batch_size", "epochs", "patience", "step_size", "gamma")
LENGTH_POOL = 50                  # batches sorted together by length_batches (bucketing as in fairseq / ESPnet)
ATTENTION_TRAIN_KEYS = ATTENTION_KEYS + ("frame_pool",)   # in the config only for fusion='attention'
STATS_TRAIN_KEYS = STATS_KEYS + ("frame_pool",)           # in the config only for fusion='stats'
FRAME_TRAIN_KEYS = {"attention": ATTENTION_TRAIN_KEYS, "stats": STATS_TRAIN_KEYS}
MASK_KEYS = ("frame_mask_time", "frame_mask_channels", "frame_masks")   # in the config only when masking is on
BACKBONE_KEYS = ("speech_backbone", "image_backbone", "text_backbone")
RESUME_MAY_CHANGE = ("epochs", "patience")


@dataclass
class TrainResult:
    model: nn.Module            # best weights, eval mode
    loss_fn: nn.Module
    config: dict                # what config.json holds, minus the "checkpoint" block
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss, val_loss, lr, seconds
    best_epoch: int = 0         # 1-based
    best_val_loss: float = math.inf
    stopped_early: bool = False

    @property
    def epoch_seconds(self) -> float:
        """Mean wall-clock seconds per epoch (training + validation)."""
        return float(np.mean([h["seconds"] for h in self.history])) if self.history else float("nan")


# ----------------------------------------------------------------------------- config and inputs
def training_config(config: dict) -> dict:
    """The training knobs (schema defaults for missing ones), checked, plus backbone names when given."""
    knobs = {}
    frame_keys = FRAME_TRAIN_KEYS.get(config.get("fusion"), ())
    used = TRAIN_KEYS + frame_keys
    used += ("scale_lr",) if config.get("scale_lr") is not None else ()
    used += ("label_smoothing",) if config.get("label_smoothing") else ()
    if config.get("fusion") == "stats":
        used += tuple(k for k in STATS_OPTIONAL if config.get(k, STATS_DEFAULTS[k]) != STATS_DEFAULTS[k])
    used += ("length_batches",) if frame_keys and config.get("length_batches") else ()
    # masking acts on frames: like length_batches, a preset's masks leave the paper heads (one pooled vector) alone
    used += MASK_KEYS if frame_keys and (config.get("frame_mask_time") or config.get("frame_mask_channels")) else ()
    for k in used:
        v = config.get(k, SCHEMA[k].default)
        if SCHEMA[k].kind in (float, (float, type(None))) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        knobs[k] = v
    for k in frame_keys:
        if k in knobs and (not isinstance(knobs[k], int) or isinstance(knobs[k], bool) or knobs[k] < 1):
            raise ParamError(f"{k} must be a positive int, got {knobs[k]!r} (default {SCHEMA[k].default})")
    for k in MASK_KEYS:
        if k in knobs and (not isinstance(knobs[k], int) or isinstance(knobs[k], bool)
                           or knobs[k] < (1 if k == "frame_masks" else 0)):
            raise ParamError(f"{k} must be an int >= {1 if k == 'frame_masks' else 0}, got {knobs[k]!r}")
    if "length_batches" in knobs and knobs["length_batches"] is not True:
        raise ParamError(f"length_batches must be True or False, got {knobs['length_batches']!r}")
    if "label_smoothing" in knobs and knobs["loss"] != "contrastive":
        raise ParamError(f"label_smoothing smooths the contrastive loss's targets; loss={knobs['loss']!r} has none "
                         "(set loss='contrastive' or label_smoothing=0)")
    if "scale_lr" in knobs:
        if not isinstance(knobs["scale_lr"], float) or not knobs["scale_lr"] > 0:
            raise ParamError(f"scale_lr must be a float > 0 (or None for lr), got {knobs['scale_lr']!r}")
        if knobs["loss"] != "contrastive" or not knobs["learnable_scale"] or knobs["tau_bug"]:
            raise ParamError("scale_lr is the learning rate of a learnable logit scale; set learnable_scale=True "
                             "with loss='contrastive' (and tau_bug=False), or leave scale_lr at None")
    for k in ("batch_size", "epochs", "patience", "step_size", "seed"):
        if (not isinstance(knobs[k], int) or isinstance(knobs[k], bool)
                or knobs[k] < (2 if k == "batch_size" else 0 if k == "seed" else 1)):
            raise ParamError(f"{k} must be a {'non-negative' if k == 'seed' else 'positive'} int"
                             f"{' >= 2 (BatchNorm and the contrastive loss need pairs)' if k == 'batch_size' else ''}, "
                             f"got {knobs[k]!r}")
    if not knobs["lr"] > 0 or not 0 < knobs["gamma"] <= 1:
        raise ParamError(f"need lr > 0 and 0 < gamma <= 1, got lr={knobs['lr']}, gamma={knobs['gamma']}")
    knobs.update({k: config[k] for k in BACKBONE_KEYS if config.get(k) is not None})
    return knobs


def _needs(branches: str) -> tuple[str, ...]:
    return {"combined": ("speech", "image"), "speech": ("speech",),
            "image": ("image",)}.get(branches, ("speech", "image"))


def _tensors(arrays: dict, split: str, branches: str, frames: bool = False) -> dict:
    """Check one split's arrays (present, 2-D, same length, finite) and wrap them as float32 tensors;
    with ``frames``, "speech" is frame features (kept as ``Frames``, padded per batch)."""
    out, n = {}, None
    for key in _needs(branches) + ("text",):
        if arrays is None or arrays.get(key) is None:
            raise ParamError(f"{split} arrays lack {key!r} features, which branches={branches!r} needs; "
                             "extract them with claspkit.encoders.features first")
        if key == "speech" and (frames or isinstance(arrays[key], Frames)):
            if not frames:
                raise ParamError(f"{split} speech features are frame features, which only the frame heads "
                                 "(fusion='attention' or 'stats') read; pass the mean-pooled features "
                                 "(pipeline.features) for concat/gating")
            a = as_frames(arrays[key])
            if len(a) == 0:
                raise ParamError(f"{split} speech frame features hold no items; extract them for every item")
        else:
            a = np.ascontiguousarray(arrays[key], dtype=np.float32)
            if a.ndim != 2 or len(a) == 0 or not np.isfinite(a).all():
                raise ParamError(f"{split} {key} features must be a finite, non-empty (n, dim) array, got shape "
                                 f"{a.shape} (NaN/inf means a failed extraction: re-extract those items)")
        if n is not None and len(a) != n:
            raise ParamError(f"{split} arrays disagree on the number of items ({key}: {len(a)} vs {n}); "
                             "they must be row-aligned")
        n = len(a)
        out[key] = a if isinstance(a, Frames) else torch.from_numpy(a)
    return out


def _dim(x) -> int:
    return int(x.dim) if isinstance(x, Frames) else int(x.shape[1])


def _index(idx):
    return idx.numpy() if torch.is_tensor(idx) else idx


def _forward(model, data: dict, idx=None, members: bool = False, augment=None) -> torch.Tensor:
    """The model's output for the items ``idx``; with ``members``, an ensemble's (members, batch, dim) outputs.
    ``augment(x, lengths)`` changes a padded frame batch in place before the model sees it (training only)."""
    pick = (lambda t: t) if idx is None else (lambda t: t[idx])
    image = pick(data["image"]) if "image" in data else None
    speech = data.get("speech")
    call = model.member_outputs if members else model
    if "pooled" in data:
        return call(pick(data["pooled"]), image, pooled=True)
    if isinstance(speech, Frames):
        x, lengths = speech.pad(_index(idx))
        if augment is not None:
            augment(x, lengths)
        return call(torch.from_numpy(x), image, lengths=torch.from_numpy(lengths))
    return call(pick(speech) if speech is not None else None, image)


def _training_loss(model, loss_fn, data: dict, idx, augment=None) -> torch.Tensor:
    """The batch loss; an ensemble head's members each answer to their own loss (averaged), so they stay
    independent models, and only inference averages them."""
    if getattr(model, "n_members", 1) == 1:
        return loss_fn(_forward(model, data, idx, augment=augment), data["text"][idx])
    outs = _forward(model, data, idx, members=True, augment=augment)
    return torch.stack([loss_fn(o, data["text"][idx]) for o in outs]).mean()


def _with_pooled(model, data: dict, chunk: int = 256) -> dict:
    """``data`` plus "pooled": each item's frames pooled once by a head whose pooling has no weights (the stats
    head), in chunks of similar length, instead of padding and pooling every batch of every epoch again."""
    frames = data.get("speech")
    if not isinstance(frames, Frames) or getattr(model, "pool", None) is None:
        return data
    order = np.argsort(frames.lengths, kind="stable")
    pooled = torch.empty(len(frames), 2 * frames.dim)
    with torch.no_grad():
        for a in range(0, len(order), chunk):
            idx = order[a:a + chunk]
            x, lengths = frames.pad(idx)
            pooled[torch.from_numpy(idx)] = model.pool(torch.from_numpy(x), torch.from_numpy(lengths))
    return {**data, "pooled": pooled}


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """Independent seeds per (run seed, epoch, stream): 0 = dropout, 1 = batch order, 2 = frame masks."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed: int, num_threads: int | None = None):
    """Deterministic kernels, a private torch RNG stream and optionally a thread count; all restored after."""
    prev, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        if num_threads:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev)
            torch.set_num_threads(prev_threads)


def _optim_tensors(opt) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {f"optim.{pid}.{name}": t for pid, st in sd["state"].items() for name, t in st.items()}
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _load_optim(opt, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = t
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------- training
def _evaluate(model, loss_fn, data: dict, batch_size: int) -> float:
    model.eval()
    n, total = len(data["text"]), 0.0
    with torch.no_grad():
        for a in range(0, n, batch_size):
            idx = slice(a, a + batch_size)
            out = _forward(model, data, idx)
            total += float(loss_fn(out, data["text"][idx])) * out.shape[0]
    return total / n


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    chunks = list(torch.randperm(n, generator=gen).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) < batch_size:
        chunks.pop()
    return chunks


def _length_batches(lengths: np.ndarray, batch_size: int, gen: torch.Generator,
                    pool: int = LENGTH_POOL) -> list[np.ndarray]:
    """Full batches of similar length: a seeded permutation cut into pools of ``pool`` batches, each pool
    sorted by length (stable) and cut into batches, the batches then shuffled. Padding a batch to its
    longest item wastes less, while every epoch still mixes items anew."""
    perm = torch.randperm(len(lengths), generator=gen).numpy()
    batches = []
    for a in range(0, len(perm), batch_size * pool):
        chunk = perm[a:a + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()                 # only the last pool can leave a short batch: the same rule as _batches
    order = torch.randperm(len(batches), generator=gen).numpy()
    return [torch.from_numpy(batches[i]) for i in order]


def train(config: dict, train_arrays: dict, val_arrays: dict, *, progress: bool = True,
          checkpoint_dir=None, resume_from=None, checkpoint_every: int = 5,
          num_threads: int | None = None, init_state: dict | None = None) -> TrainResult:
    """Train a fusion encoder on cached features with early stopping; see the module docstring.

    ``config``: training knobs as in ``claspkit.config.SCHEMA`` (a whole Params works; missing knobs take
    the schema defaults). ``checkpoint_dir``: write a resumable checkpoint every ``checkpoint_every`` epochs
    and at the end. ``resume_from``: continue a run from such a folder (same knobs except ``epochs`` and
    ``patience``, which may change to extend a run). ``num_threads``: torch CPU threads for this run
    (None = leave torch's setting); on a busy shared machine 1 thread can be several times faster than
    threads that wait on each other. Runs are bitwise reproducible for a given thread count.
    ``train_arrays`` / ``val_arrays``: ``{"speech", "image", "text"}`` row-aligned (n, dim) arrays; for
    ``fusion='attention'`` "speech" is frame features (``claspkit.encoders.frames.Frames``, e.g. from
    ``pipeline.frame_features``), pooled ``frame_pool`` frames per step.
    ``init_state``: start from these weights (a trained head's state dict, same fusion config) instead of a
    fresh initialisation: fine-tuning, as ``claspkit adapt`` does.
    """
    knobs = training_config(config)
    frames = knobs["fusion"] in FRAME_FUSIONS
    tr, va = (_tensors(a, s, knobs["branches"], frames)
              for a, s in ((train_arrays, "train"), (val_arrays, "validation")))
    if len(tr["text"]) < 2:
        raise ParamError("need at least 2 training items (BatchNorm and the contrastive loss need pairs)")
    for key in tr:
        if _dim(tr[key]) != _dim(va[key]):
            raise ParamError(f"train and validation {key} features have different dims "
                             f"({_dim(tr[key])} vs {_dim(va[key])}); extract both with the same backbone")
    if frames:
        pools = {f.pool for f in (tr.get("speech"), va.get("speech")) if f is not None} - {None}
        if pools - {knobs["frame_pool"]}:
            raise ParamError(f"the frame features were pooled {sorted(pools)} frames per step but frame_pool is "
                             f"{knobs['frame_pool']}; extract them with frame_pool={knobs['frame_pool']} or set "
                             "frame_pool to match")
    dims = {"speech_dim": _dim(tr["speech"]) if "speech" in tr else None,
            "image_dim": _dim(tr["image"]) if "image" in tr else None, "out_dim": _dim(tr["text"])}
    sizes = ("fusion", "branches", "dropout_scale") + {"attention": ATTENTION_KEYS, "stats": STATS_KEYS}.get(
        knobs["fusion"], ()) + tuple(k for k in STATS_OPTIONAL if k in knobs)
    fusion_cfg = {**{k: knobs[k] for k in sizes}, **dims}
    bs, seed = knobs["batch_size"], knobs["seed"]

    if checkpoint_every < 1:
        raise ParamError(f"checkpoint_every must be >= 1 epoch, got {checkpoint_every}")
    with _seeded(seed, num_threads):
        model = build_fusion(fusion_cfg)
        if init_state is not None:
            theirs = {k: tuple(v.shape) for k, v in init_state.items()}
            ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            if theirs != ours:
                raise ParamError("init_state does not fit this head (its tensors' names or shapes differ): "
                                 f"fine-tune with the starting model's own fusion config ({fusion_cfg})")
            model.load_state_dict(init_state)
        masking = bool(knobs.get("frame_mask_time") or knobs.get("frame_mask_channels"))
        tr, va = (tr if masking else _with_pooled(model, tr)), _with_pooled(model, va)  # masks change each batch
        loss_fn = build_loss(knobs["loss"], tau=knobs["tau"], learnable_scale=knobs["learnable_scale"],
                             tau_bug=knobs["tau_bug"], huber_delta=knobs["huber_delta"],
                             label_smoothing=knobs.get("label_smoothing", 0.0))
        opt = _adam(model, loss_fn, knobs)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=knobs["step_size"], gamma=knobs["gamma"])
        saved_config = {**knobs, **model.config}
        st = {"epoch": 0, "history": [], "best_epoch": 0, "best_val_loss": math.inf, "bad_epochs": 0,
              "stopped_early": False}
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if resume_from is not None:
            best_state, st = _resume(resume_from, saved_config, model, loss_fn, opt, sched)

        def checkpoint():
            if checkpoint_dir is None:
                return
            tensors, groups = _optim_tensors(opt)
            tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
            tensors.update({f"loss.{k}": v for k, v in loss_fn.state_dict().items()})
            extra = {**st, "optimizer_groups": groups, "scheduler": sched.state_dict()}
            write_checkpoint(checkpoint_dir, best_state, model.config, saved_config, extra, tensors)

        bar = progress_bar(total=knobs["epochs"], initial=st["epoch"], disable=not progress, desc="train", unit="epoch")
        while st["epoch"] < knobs["epochs"] and st["bad_epochs"] < knobs["patience"]:
            epoch, t0 = st["epoch"], time.perf_counter()
            torch.manual_seed(_epoch_seed(seed, epoch, 0))
            gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch, 1))
            lr = opt.param_groups[0]["lr"]
            scale_lr = opt.param_groups[1]["lr"] if len(opt.param_groups) > 1 else None
            model.train()
            total, count = 0.0, 0
            batches = (_length_batches(tr["speech"].lengths, bs, gen) if knobs.get("length_batches")
                       else _batches(len(tr["text"]), bs, gen))
            augment = _frame_masker(knobs, _epoch_seed(seed, epoch, 2)) if masking else None
            for idx in batches:
                loss = _training_loss(model, loss_fn, tr, idx, augment)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, count = total + loss.item() * len(idx), count + len(idx)
            train_loss = total / count
            val_loss = _evaluate(model, loss_fn, va, bs)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise ClaspkitError(f"training diverged at epoch {epoch + 1} (train loss {train_loss}, "
                                    f"validation loss {val_loss}); lower lr (now {knobs['lr']})")
            sched.step()
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                   "seconds": time.perf_counter() - t0}
            if getattr(loss_fn, "logit_scale", None) is not None:
                row["logit_scale"] = float(loss_fn.scale().detach())
            if scale_lr is not None:
                row["scale_lr"] = scale_lr
            st["history"].append(row)
            st["epoch"] = epoch + 1
            if val_loss < st["best_val_loss"]:
                st.update(best_val_loss=val_loss, best_epoch=epoch + 1, bad_epochs=0)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                st["bad_epochs"] += 1
            st["stopped_early"] = st["bad_epochs"] >= knobs["patience"]
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=st["best_epoch"])
            if st["epoch"] % checkpoint_every == 0:
                checkpoint()
        bar.close()
        checkpoint()
        model.load_state_dict(best_state)
    return TrainResult(model=model.eval(), loss_fn=loss_fn, config=saved_config, history=st["history"],
                       best_epoch=st["best_epoch"], best_val_loss=st["best_val_loss"],
                       stopped_early=st["stopped_early"])


def _frame_masker(knobs: dict, seed: int):
    """The epoch's frame masking (``claspkit.data.augment.masking``): one generator, drawn batch after batch."""
    from claspkit.data.augment.masking import mask_frames

    rng = np.random.default_rng(seed)
    return lambda x, lengths: mask_frames(x, lengths, rng, knobs["frame_mask_time"], knobs["frame_mask_channels"],
                                          knobs["frame_masks"])


def _adam(model, loss_fn, knobs) -> torch.optim.Adam:
    """One parameter group at lr; with scale_lr, the loss's logit scale gets a second group at scale_lr."""
    if knobs.get("scale_lr") is None:
        return torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=knobs["lr"])
    return torch.optim.Adam([{"params": list(model.parameters())},
                             {"params": list(loss_fn.parameters()), "lr": knobs["scale_lr"]}], lr=knobs["lr"])


def _resume(directory, saved_config, model, loss_fn, opt, sched):
    meta = read_checkpoint_config(directory)
    info = meta["checkpoint"]
    if STATE_FILE not in info["files"]:
        raise ParamError(f"{display_path(directory)} holds weights only (written by save_checkpoint); resuming "
                         "needs a folder written by train(checkpoint_dir=...)")
    diff = {k: (meta.get(k), v) for k, v in saved_config.items()
            if k not in RESUME_MAY_CHANGE and meta.get(k) != v}
    if diff:
        raise ParamError(f"cannot resume {display_path(directory)}: settings differ {diff} (checkpoint, now); "
                         f"only {', '.join(RESUME_MAY_CHANGE)} may change -- "
                         "use the checkpoint's values or start fresh")
    tensors = load_file(str(Path(directory) / STATE_FILE))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    loss_fn.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("loss.")})
    _load_optim(opt, tensors, info["optimizer_groups"])
    sched.load_state_dict(info["scheduler"])
    best_state = load_file(str(Path(directory) / MODEL_FILE))
    saved_config.update({k: meta[k] for k in BACKBONE_KEYS if k in meta and k not in saved_config})
    st = {k: info[k] for k in ("epoch", "history", "best_epoch", "best_val_loss", "bad_epochs", "stopped_early")}
    return best_state, st


