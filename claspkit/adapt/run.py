"""``claspkit adapt AUDIO --model M --out M2``: fit a CLASP head to untranscribed recordings by distillation.

CLASP trained on synthetic voices does not carry over to real ones (issue 27). A person with an archive of
real recordings and no transcripts can still teach it those voices: the cascade's ASR transcribes the
archive, its confident transcripts are embedded by the model's own (frozen) text encoder, and the head is
fine-tuned so each segment's speech embedding lands on its transcript's embedding, with the contrastive
loss it was trained with (SpeechDPR's cascade-teacher distillation, on our head).

Stages, each resumable: cut (``segments``), pseudo-transcribe (transcript cache), filter (``pseudo.Confidence``),
features (feature cache, the model's own backbones and image runtime), fine-tune (checkpointed every epoch under
the work folder). Validation for early stopping is a seeded tenth of the *groups* (source files, or groups the
caller names such as speakers or conversations), so no group is in both. ``M`` is only read; ``M2`` is written
last, atomically, with ``adapt.json`` (what was kept, stage times, the training history) beside its weights.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

from claspkit.adapt.pseudo import Confidence, rejection_counts, transcribe_scored
from claspkit.errors import ClaspkitError, ParamError
from claspkit.paths import atomic_write_text, display_path

__all__ = ["ADAPT_FILE", "FINETUNE", "check_out", "work_folder", "group_split", "dedupe_texts", "file_features",
           "embed_files", "adapt"]

ADAPT_FILE = "adapt.json"
# Fine-tuning knobs: a tenth of the paper's learning rate, so the head moves toward the new voices without
# forgetting what the synthetic pairs taught it; early stopping on the held-out groups ends it.
FINETUNE = {"lr": 1e-4, "epochs": 30, "patience": 5, "batch_size": 64}


def check_out(model, out, force: bool = False) -> Path:
    """The output folder, refused when it is the input model (or inside it), or exists and ``force`` is off."""
    model, out = Path(model).expanduser().resolve(), Path(out).expanduser().resolve()
    if out == model or model in out.parents or out in model.parents:
        raise ParamError(f"--out {display_path(out)} would overwrite the model being adapted "
                         f"({display_path(model)}); name a new folder")
    if out.exists() and not force:
        raise ParamError(f"{display_path(out)} already exists; name a new folder, or pass --force to replace it")
    return out


def work_folder(out) -> Path:
    """Where the stages keep their state until ``out`` is written: ``.<out name>.adapt`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.adapt"


def group_split(groups: Sequence, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation items: a seeded ``val_fraction`` of the distinct groups (at least one)."""
    if not 0 < val_fraction < 1:
        raise ParamError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    names = sorted(set(map(str, groups)))
    if len(names) < 2:
        raise ParamError(f"need at least 2 groups to hold one out for validation, got {len(names)}: give more "
                         "files (or name groups)")
    rng = np.random.default_rng(seed)
    held = set(rng.choice(names, size=max(1, int(round(val_fraction * len(names)))), replace=False))
    return np.array([str(g) in held for g in groups])


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def dedupe_texts(texts: Sequence[str]) -> np.ndarray:
    """Mask keeping the first item of each transcript (after case and punctuation folding): two segments with
    one text in a batch would be each other's false negatives under the contrastive loss."""
    seen, keep = set(), []
    for t in texts:
        k = _norm(t)
        keep.append(k not in seen)
        seen.add(k)
    return np.array(keep, dtype=bool)


def file_features(clasp, paths: list, progress: bool) -> dict:
    """Each branch's features of audio files through the feature cache, as ``clasp.fuse`` takes them."""
    from claspkit.encoders.features import extract_audio, extract_frames

    out = {}
    for role, enc in clasp.encoders.items():
        frames = role == "speech" and clasp.frames
        out[role] = (extract_frames if frames else extract_audio)(enc, paths, progress=progress,
                                                                  desc=f"{role} features")
    return out


def _concat(a, b):
    from claspkit.encoders.frames import Frames

    if isinstance(a, Frames) or isinstance(b, Frames):
        if not (isinstance(a, Frames) and isinstance(b, Frames)) or a.dim != b.dim or a.pool != b.pool:
            raise ParamError("replay frames differ from the new recordings' (another backbone or frame_pool)")
        return Frames(list(a.items) + list(b.items), a.dim, a.pool)
    if np.shape(a)[1:] != np.shape(b)[1:]:
        raise ParamError(f"replay features are {np.shape(b)[1:]}, the new recordings' {np.shape(a)[1:]}: "
                         "extract both with the model's backbones")
    return np.concatenate([a, b])


def embed_files(clasp, paths: Sequence, progress: bool = False) -> np.ndarray:
    """``clasp``'s unit vectors of audio files through the feature cache: models sharing backbones (a model
    and its adaptation) pay for the features once."""
    return clasp.fuse(file_features(clasp, list(paths), progress))


def adapt(audio, model, out, *, asr: str = "whisper-base", language: str = "en", groups: dict | None = None,
          confidence: Confidence = Confidence(), val_fraction: float = 0.1, seed: int = 42, max_s: float = 15.0,
          finetune: dict | None = None, image_runtime: str = "onnx", force: bool = False, progress: bool = True,
          files: Sequence | None = None, replay: dict | None = None) -> dict:
    """Adapt checkpoint ``model`` to the recordings under ``audio`` (or the list ``files``); write ``out``.

    ``groups``: source file -> group name (speaker, conversation) for the validation split; default each file
    its own group. ``finetune`` overrides ``FINETUNE``. ``replay``: training arrays of the model's own pairs
    (``{"speech", "image", "text"}``, as ``train`` takes them) mixed into every epoch so the head keeps what they
    taught it (rehearsal); validation stays on the new recordings. Returns the report written to
    ``out/adapt.json``.
    """
    import torch

    from claspkit.adapt.segments import audio_files, cut_segments
    from claspkit.encoders.features import extract_text
    from claspkit.model.checkpoint import CONFIG_FILE, load_checkpoint, save_checkpoint
    from claspkit.model.clasp import CLASP, create_encoder
    from claspkit.model.train import train

    if model is None:
        from claspkit.pretrained import pretrained_dir

        model = pretrained_dir()
    knobs = {**FINETUNE, **(finetune or {})}
    unknown = set(knobs) - set(FINETUNE)
    if unknown:
        raise ParamError(f"unknown fine-tuning knob(s) {sorted(unknown)}; known: {sorted(FINETUNE)}")
    out = check_out(model, out, force)
    work = work_folder(out)
    work.mkdir(parents=True, exist_ok=True)
    times = {}

    t = time.perf_counter()
    sources = [Path(f) for f in files] if files is not None else audio_files(audio)
    items, skipped = cut_segments(sources, work, max_s=max_s, progress=progress)
    if items.empty:
        raise ClaspkitError(f"nothing to learn from: all {len(sources)} files were skipped "
                            f"(e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else "no audio given")
    times["segment_s"] = time.perf_counter() - t

    t = time.perf_counter()
    teacher = create_encoder("asr", asr)
    entries = transcribe_scored(teacher, list(items.path), language=language, progress=progress)
    times["transcribe_s"] = time.perf_counter() - t
    counts = rejection_counts(entries, confidence)
    keep = np.array([confidence.reason(e) is None for e in entries], dtype=bool)
    items = items.assign(text=[e["text"] for e in entries], avg_logprob=[e["avg_logprob"] for e in entries])[keep]
    unique = dedupe_texts(list(items.text))
    counts["repeated text"] = int((~unique).sum())
    items = items[unique].reset_index(drop=True)
    if len(items) < 4:
        raise ClaspkitError(f"only {len(items)} confident, distinct transcripts ({counts}); adapt needs more "
                            "speech, or a looser confidence (e.g. a lower min_avg_logprob)")
    group_of = [str((groups or {}).get(s, s)) for s in items.source]
    val = group_split(group_of, val_fraction, seed)
    if val.all() or not val.any() or (~val).sum() < 2:
        raise ClaspkitError(f"the validation split left {(~val).sum()} training items: give more groups")

    t = time.perf_counter()
    clasp = CLASP.from_pretrained(model, image_runtime=image_runtime, local_only=True)
    feats = file_features(clasp, list(items.path), progress)
    text = np.asarray(extract_text(clasp.text, list(items.text), progress=progress, desc="text features"))
    times["features_s"] = time.perf_counter() - t

    def part(mask):                     # arrays and Frames both take an index array
        idx = np.flatnonzero(mask)
        return {"text": text[idx], **{role: x[idx] for role, x in feats.items()}}

    training = part(~val)
    if replay is not None:
        if not set(training) <= set(replay):
            raise ParamError(f"replay needs the arrays {sorted(training)}, got {sorted(replay)}")
        training = {k: _concat(v, replay[k]) for k, v in training.items()}

    head, config = load_checkpoint(model)
    t = time.perf_counter()
    # an interrupted fine-tuning resumes only on the same items, start and replay; anything else starts over
    inputs = [clasp.identity["checkpoint_sha256"], list(items.path), list(items.text), val.tolist(),
              0 if replay is None else len(replay["text"])]
    stamp = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
    fingerprint = work / "train" / "inputs.sha256"
    if (work / "train").exists() and not (fingerprint.is_file() and fingerprint.read_text() == stamp):
        shutil.rmtree(work / "train")
    (work / "train").mkdir(parents=True, exist_ok=True)
    atomic_write_text(fingerprint, stamp)
    result = train({**config, **knobs, "seed": seed}, training, part(val), progress=progress,
                   checkpoint_dir=work / "train", checkpoint_every=1,
                   resume_from=work / "train" if (work / "train" / CONFIG_FILE).is_file() else None,
                   init_state={k: v.detach().clone() for k, v in head.state_dict().items()})
    times["train_s"] = time.perf_counter() - t
    report = {
        "adapted_from": {"path": display_path(Path(model)), "checkpoint_sha256": clasp.identity["checkpoint_sha256"]},
        "teacher": {"asr": asr, "cache_id": teacher.scored_cache_id, "language": language},
        "confidence": confidence.as_dict(), "sources": len(sources), "skipped": skipped, "segments": len(entries),
        "pseudo": counts, "train_items": int((~val).sum()), "val_items": int(val.sum()),
        "replay_items": 0 if replay is None else len(replay["text"]),
        "val_groups": len(set(np.asarray(group_of)[val])), "finetune": knobs, "seed": seed,
        "best_epoch": result.best_epoch, "history": result.history,
        "stage_seconds": {k: round(v, 1) for k, v in times.items()},
    }
    staged = out.parent / f".{out.name}.writing"
    if staged.exists():
        shutil.rmtree(staged)
    with torch.no_grad():
        save_checkpoint(staged, result.model, result.config,
                        {"adapted_from": report["adapted_from"], "pseudo": counts})
    atomic_write_text(staged / ADAPT_FILE, json.dumps(report, indent=1, default=float))
    items.assign(validation=val).to_csv(staged / "pseudo_transcripts.csv", index=False)
    if out.exists():
        shutil.rmtree(out)
    staged.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    return {**report, "out": out}
