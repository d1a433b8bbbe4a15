"""Presets and parameters: one schema, YAML presets in ``params/``, papermill overrides on top.

Every knob a notebook exposes is declared here once, with its type and (where it has them)
its valid choices, so an unknown name or value fails at once with the list of valid ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from claspkit.constants import (
    ASTERISK_LANGUAGES, BACKBONE_PATTERN, BACKBONES, CHANNEL_PARAMS, CHANNEL_RECIPES, CODEC_KBPS, ENGINES, FUSIONS,
    IMAGE_RUNTIMES, LOSSES, NOISE_KINDS, PAPER_FUSIONS,
)
from claspkit.errors import BackboneError, ParamError, choices_hint
from claspkit.paths import project_root

__all__ = [
    "FUSIONS", "PAPER_FUSIONS", "LOSSES", "BRANCHES", "TRANSLATION_SOURCES", "IMAGE_RUNTIMES", "ENGINES", "Knob",
    "SCHEMA",
    "params_dir", "available_presets",
    "Params", "load_params", "backbone_key", "channel_recipe", "describe",
]

BRANCHES = ("combined", "speech", "image")
TRANSLATION_SOURCES = ("udhr", "hub")


@dataclass(frozen=True)
class Knob:
    default: Any
    help: str
    kind: type | tuple = object
    choices: tuple | None = None
    minimum: float | None = None      # smallest valid value (None values are not checked)


# The paper's value is given in `help` wherever ours differs.
SCHEMA: dict[str, Knob] = {
    "preset": Knob("tiny", "name of the preset YAML in params/", str),
    "seed": Knob(42, "seed for every random choice (splits, voices, init, candidates)", int),
    # --- data (notebook 01)
    "n_sentences": Knob(None, "Brown sentences to keep (None = all that pass cleaning)", (int, type(None))),
    "max_tokens": Knob(48, "drop sentences longer than this many tokens (the paper's maximum)", int),
    "voices": Knob(["espeak:en-us", "espeak:en-gb", "espeak:en-gb-scotland", "espeak:en-029"],
                   "TTS voices, assigned deterministically per sentence (paper: one Tacotron 2 voice)", list),
    "tts_workers": Knob(2, "parallel synthesis processes", int),
    "split": Knob([0.8, 0.1, 0.1], "train/val/test fractions, stratified by category (paper: 80/10/10)", list),
    "eval_from": Knob(None, "a smaller preset whose validation and test sentences are this run's, all other "
                            "sentences training (replaces `split`: a data-scaling step scored on the same gallery)",
                      (str, type(None))),
    "common_voice_dir": Knob(None, "local Common Voice folder (tsv + clips) to import", (str, type(None))),
    "fleurs_dir": Knob(None, "local FLEURS folder (tsv + audio) to import", (str, type(None))),
    "brown_dir": Knob(None, "existing nltk_data/corpora/brown folder (None = find or fetch it)", (str, type(None))),
    # --- backbones and features (notebook 02)
    "speech_backbone": Knob("whisper-tiny.en", "speech encoder (paper: hubert-large-ls960-ft)", str),
    "image_backbone": Knob("efficientnet-lite0", "spectrogram image encoder (paper: efficientnet_b7 logits)", str),
    "image_runtime": Knob("torch", "runs the image CNN in torch, or in ONNX Runtime (3x faster on CPU, features "
                                   "differ by ~1e-6 and are cached apart)", str, IMAGE_RUNTIMES),
    "text_backbone": Knob("e5-small-multilingual", "frozen text encoder (paper: labse)", str),
    "asr_backbone": Knob("whisper-tiny.en", "ASR model of the cascade baseline (paper: hubert-large-ls960-ft CTC)",
                         str),
    "batch_size_features": Knob(16, "items per encoder batch during feature extraction", int),
    "engine": Knob("local", "where the audio features are computed: here, or on Ray (claspkit[ray]; the same cache "
                            "entries bit for bit, text stays here)", str, ENGINES),
    "ray_address": Knob(None, "with engine ray: a running cluster (HOST:6379 or auto; None = a local Ray instance)",
                        (str, type(None))),
    "stage2_speech_backbones": Knob(["whisper-tiny.en", "whisper-base"],
                                    "stage-2 grid: speech encoders (paper: hubert-large-ls960-ft, wav2vec2-base-960h)",
                                    list),
    "stage2_text_backbones": Knob(["e5-small-multilingual", "muse-multilingual"],
                                  "stage-2 grid: text encoders (paper: labse, xlmr-paraphrase)", list),
    "stage3": Knob(None, "Stage 3's configuration as {speech_backbone, text_backbone, fusion} (None = the Stage-2 one "
                         "with the best validation MRR; tiny fixes it: on 40 validation items the choice is a near tie "
                         "that CPU kinds can flip, which changed every later notebook)", (dict, type(None))),
    "stage2_attention": Knob(True, "stage-2 grid: also train the attention head (frames, beyond the paper) on every "
                                   "backbone pair; never chosen for Stage 3, never matched to a paper row", bool),
    # --- fusion and training (notebooks 03, 04)
    "fusion": Knob("concat", "fusion head (attention: a transformer over the speech frames; stats: an MLP on "
                             "their mean and std; neither in the paper)",
                   str, FUSIONS),
    "branches": Knob("combined", "which inputs the fusion sees (stage 1 ablation)", str, BRANCHES),
    "loss": Knob("contrastive", "training loss: CLASP (contrastive) or LASP (huber)", str, LOSSES),
    "tau": Knob(0.07, "contrastive temperature (paper: 0.07, fixed)", float),
    "learnable_scale": Knob(False, "learn the logit scale as CLIP does (starts at 1/tau)", bool),
    "scale_lr": Knob(None, "Adam learning rate of a learnable logit scale (None = lr, one parameter group)",
                     (float, type(None)), minimum=1e-12),
    "tau_bug": Knob(False, "reproduce the authors' logits*tau bug (for explanation only)", bool),
    "label_smoothing": Knob(0.0, "contrastive loss: share of each target moved off the positive (not in the paper; "
                                 "0.1 helped the stats head on medium)", float, minimum=0.0),
    "huber_delta": Knob(0.6, "Huber loss delta (paper: 0.6)", float),
    "lr": Knob(1e-3, "Adam learning rate (paper: 5e-6 over up to 400 epochs)", float),
    "batch_size": Knob(64, "training batch size (paper: 32)", int),
    "epochs": Knob(60, "maximum epochs (paper: up to 400)", int),
    "patience": Knob(8, "early-stopping patience on validation loss (paper: 10)", int),
    "step_size": Knob(20, "StepLR step in epochs (paper: 100)", int),
    "gamma": Knob(0.4, "StepLR decay (paper: 0.4)", float),
    "train_threads": Knob(1, "torch threads while training (1: fastest for this small model on a busy CPU, "
                             "and bit-identical results on any machine)", int),
    "dropout_scale": Knob(1.0, "multiplies the paper's dropout rates (0.15, 0.1)", float),
    # --- the attention head (fusion: attention; not in the paper)
    "frame_pool": Knob(4, "speech-encoder frames averaged per step of the frame features (4 = 80 ms for Whisper)",
                       int, minimum=1),
    "attention_dim": Knob(256, "attention head: width of the transformer over the frames", int, minimum=2),
    "attention_layers": Knob(1, "attention head: pre-norm transformer layers", int, minimum=1),
    "attention_heads": Knob(4, "attention head: attention heads (must divide attention_dim)", int, minimum=1),
    "stats_hidden": Knob(4096, "stats head: width of its one hidden layer over the frames' mean and std", int,
                         minimum=1),
    "stats_members": Knob(1, "stats head: an ensemble of this many MLPs, each trained on its own loss, their unit "
                             "outputs averaged (one vector per utterance; training costs this many times more)", int,
                          minimum=1),
    "frame_mask_time": Knob(0, "frame heads: SpecAugment-style time masks on the training frames, each up to this "
                               "many steps (0 = off; train time only, seeded per epoch; paper heads ignore it)", int,
                            minimum=0),
    "frame_mask_channels": Knob(0, "frame heads: channel masks on the training frames, each up to this many feature "
                                   "channels (0 = off)", int, minimum=0),
    "frame_masks": Knob(2, "frame heads: time masks and channel masks per item when masking is on", int, minimum=1),
    "length_batches": Knob(False, "frame heads: draw each training batch among items of similar length "
                                  "(pads less, so an epoch costs less; the batch order stays seeded)", bool),
    # --- evaluation
    "n_candidates": Knob(5, "candidates per query in the 5-random-candidates protocol (paper: 5)", int),
    "bootstrap": Knob(1000, "bootstrap resamples for 95% confidence intervals", int),
    "relevance_threshold": Knob(0.5, "cosine at or above which a pair counts as relevant (Macro-F1)", float),
    # --- multilingual (notebook 06)
    "languages": Knob(["fa", "de", "fr", "zh"], "query languages for stage 4 (the paper's four)", list),
    "translation_source": Knob("udhr", "udhr (human, offline) or hub (a translation model id)", str,
                               TRANSLATION_SOURCES),
    "translation_model": Knob("facebook/nllb-200-distilled-600M",
                              "hub translation model when translation_source='hub' (paper: SMALL-100, which needs "
                              "custom tokenizer code)", str),
    # --- robustness and real speech (notebook 09; not in the paper)
    "robust_noise_items": Knob(None, "Brown test items in the noise sweep and the gallery it is scored on "
                                     "(None = the whole deduplicated test split)", (int, type(None)), minimum=5),
    "robust_noises": Knob(["white", "babble"], "noise kinds of the sweep (babble: 4 other clips of the set)", list),
    "robust_snrs": Knob([20, 10, 5, 0], "signal-to-noise ratios of the sweep, dB", list),
    "robust_augment": Knob(True, "also train the paper head with one speed-perturbed (0.9/1/1.1), noisy (white or "
                                 "babble, 0-20 dB) copy of each training clip and score it beside the others", bool),
    "robust_channels": Knob(None, "channel recipe of the augmented head's copies instead of speed + noise: a name "
                                  "(rooms, phone, codecs, real), a list of channels (speed, room, noise, gain, "
                                  "telephone, mu_law, g722, mp3, opus) or a dict of them with ranges "
                                  "(claspkit.data.augment.recipe); None = the speed-and-noise copies",
                            (str, list, dict, type(None))),
    "held_out_voice": Knob(None, "TTS voice left out of training for the unseen-voice test, or every voice of one "
                                 "engine as <engine>:* (None = the last of `voices`)", (str, type(None))),
    "robust_real_items": Knob(None, "real English prompts scored (None = all sentence-like ones)",
                              (int, type(None)), minimum=5),
    "robust_languages": Knob(["fr", "es", "it", "ru"], "languages of the real parallel speech", list),
    "robust_parallel_items": Knob(None, "parallel prompts per language (None = all sentence-like in every "
                                        "language)", (int, type(None)), minimum=5),
    "multilingual_speech_backbone": Knob("whisper-base", "speech encoder (and ASR) for non-English speech when "
                                                         "the chosen one is English-only", str),
    "long_prompts_per_file": Knob(20, "real prompts joined into each long recording", int, minimum=1),
    "long_files": Knob(3, "long recordings indexed and searched", int, minimum=1),
    "long_pause_s": Knob(1.0, "silence between the prompts of a long recording, seconds", float, minimum=0.0),
}


def params_dir() -> Path:
    return project_root() / "params"


def available_presets() -> list[str]:
    return sorted(p.stem for p in params_dir().glob("*.yaml"))


class Params(dict):
    """A dict with attribute access, so notebooks read ``P.seed``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _check(name: str, value: Any) -> Any:
    if name not in SCHEMA:
        raise ParamError(f"unknown parameter {choices_hint(name, SCHEMA)}")
    knob = SCHEMA[name]
    if isinstance(value, tuple):
        value = list(value)
    takes_float = knob.kind is float or (isinstance(knob.kind, tuple) and float in knob.kind)
    if takes_float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if knob.kind is not object and not isinstance(value, knob.kind):
        want = knob.kind.__name__ if isinstance(knob.kind, type) else " or ".join(k.__name__ for k in knob.kind)
        raise ParamError(f"parameter {name!r} must be {want}, got {value!r} ({type(value).__name__})")
    if knob.choices is not None and value not in knob.choices:
        raise ParamError(f"parameter {name}: {choices_hint(value, knob.choices)}")
    if knob.minimum is not None and value is not None and value < knob.minimum:
        raise ParamError(f"parameter {name!r} must be >= {knob.minimum:g}, got {value!r} (default {knob.default!r})")
    return value


def load_params(preset: str = "tiny", overrides: dict | None = None, **kw) -> Params:
    """Schema defaults < ``params/<preset>.yaml`` < overrides; ``None`` overrides mean 'keep'."""
    known = available_presets()
    path = params_dir() / f"{preset}.yaml"
    if not path.is_file():
        raise ParamError(f"unknown preset {choices_hint(preset, known)} (presets live in params/*.yaml)")
    values = {k: v.default for k, v in SCHEMA.items()}
    with open(path) as fh:
        from_file = yaml.safe_load(fh) or {}
    for k, v in from_file.items():
        values[k] = _check(k, v)
    for k, v in {**(overrides or {}), **kw}.items():
        if v is not None:
            values[k] = _check(k, v)
    values["preset"] = preset
    for role in ("speech", "image", "text", "asr"):
        backbone_key(role, values[f"{role}_backbone"])
    for role in ("speech", "text"):
        for name in values[f"stage2_{role}_backbones"]:
            backbone_key(role, name)
    backbone_key("speech", values["multilingual_speech_backbone"])
    if values["stage3"] is not None:
        _check_stage3(values["stage3"])
        for role in ("speech", "text"):
            backbone_key(role, values["stage3"][f"{role}_backbone"])
    _check_robustness(values)
    if values["attention_dim"] % values["attention_heads"]:
        raise ParamError(f"attention_dim ({values['attention_dim']}) must be divisible by attention_heads "
                         f"({values['attention_heads']}), e.g. 256 with 4 heads")
    if values["eval_from"] is not None and values["eval_from"] not in known:
        raise ParamError(f"parameter eval_from: {choices_hint(values['eval_from'], known)} (a preset in params/)")
    if values["eval_from"] == preset:
        raise ParamError(f"parameter eval_from names this preset itself ({preset!r}); name a smaller one, e.g. large")
    split = values["split"]
    if len(split) != 3 or abs(sum(split) - 1) > 1e-6 or min(split) <= 0:
        raise ParamError(f"split must be three positive fractions summing to 1, got {split}")
    return Params(values)


def backbone_key(role: str, name, names: dict | None = None) -> tuple[str, tuple]:
    """Which of ``names`` ({name: source} of one role; by default ``BACKBONES[role]``, the registry's as data)
    ``name`` is, and the hub target when it matches a ``prefix:<id-or-path>`` entry; else a BackboneError
    listing the names. The one matching rule of the parameters and of the registry: nothing loads here."""
    names = BACKBONES[role] if names is None else names
    if name in names and BACKBONE_PATTERN not in name:
        return name, ()
    if isinstance(name, str) and ":" in name:
        prefix, target = name.split(":", 1)
        key = f"{prefix}:{BACKBONE_PATTERN}"
        if key in names and target:
            return key, (target,)
    offline = [n for n, source in names.items() if source == "offline"]
    raise BackboneError(f"unknown {role} backbone {choices_hint(name, names)} "
                        f"(packaged, work offline: {', '.join(offline)})")


STAGE3_KEYS = ("speech_backbone", "text_backbone", "fusion")


def _check_stage3(stage3: dict) -> None:
    if sorted(stage3) != sorted(STAGE3_KEYS):
        raise ParamError(f"parameter stage3 must name exactly {', '.join(STAGE3_KEYS)}, got {sorted(stage3)}")
    if stage3["fusion"] not in PAPER_FUSIONS:
        raise ParamError(f"parameter stage3: fusion {choices_hint(stage3['fusion'], PAPER_FUSIONS)} (a paper head)")


def channel_recipe(spec) -> dict:
    """``spec`` (a recipe name of ``CHANNEL_RECIPES``, a list of channel names, or a dict name -> parameter
    overrides) as channel -> every parameter, checked, defaults filled in, in chain order; else a ParamError
    naming what is wrong. The one rule of `robust_channels` and of ``claspkit.data.augment.Recipe.parse``:
    the channels are data in constants, so nothing loads here."""
    if isinstance(spec, str):
        if spec not in CHANNEL_RECIPES:
            raise ParamError(f"unknown channel recipe {choices_hint(spec, CHANNEL_RECIPES)}; or list channel names "
                             f"({', '.join(CHANNEL_PARAMS)})")
        spec = CHANNEL_RECIPES[spec]
    if isinstance(spec, (list, tuple)):
        spec = {name: {} for name in spec}
    if not isinstance(spec, dict) or not spec:
        raise ParamError(f"a channel recipe is a recipe name ({', '.join(CHANNEL_RECIPES)}), a non-empty list of "
                         f"channel names or a dict of them, got {spec!r}")
    out = {}
    for name, over in spec.items():
        if name not in CHANNEL_PARAMS:
            raise ParamError(f"unknown channel {choices_hint(name, CHANNEL_PARAMS)}")
        defaults = CHANNEL_PARAMS[name][1]
        over = dict(over or {})
        bad = sorted(set(over) - set(defaults))
        if bad:
            raise ParamError(f"channel {name!r} has no parameter {choices_hint(bad[0], defaults)}")
        out[name] = {k: _channel_value(name, k, over.get(k, v)) for k, v in defaults.items()}
    order = {k: i for i, k in enumerate(CHANNEL_PARAMS)}
    return {k: out[k] for k in sorted(out, key=order.__getitem__)}


def _channel_value(name: str, key: str, value):
    _, defaults, lists = CHANNEL_PARAMS[name]
    where = f"channel {name!r} parameter {key!r}"
    if key == "p":
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
            raise ParamError(f"{where} is a probability in [0, 1], got {value!r}")
        return float(value)
    if key in lists:
        if not isinstance(value, (list, tuple)) or not value:
            raise ParamError(f"{where} is a non-empty list of values to draw from, got {value!r}")
        if key == "kinds":
            for v in value:
                if v not in NOISE_KINDS:
                    raise ParamError(f"{where}: unknown noise {choices_hint(v, NOISE_KINDS)}")
            return [str(v) for v in value]
        if key == "kbps":
            lo, hi = CODEC_KBPS[name]
            if not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value):
                raise ParamError(f"{where}: {name} takes whole kbit/s from {lo} to {hi}, got {value!r}")
            return [int(v) for v in value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value):
            raise ParamError(f"{where}: speed factors must be positive numbers, got {value!r}")
        return [float(v) for v in value]
    if isinstance(defaults[key], list):
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
        if not ok or value[0] > value[1]:
            raise ParamError(f"{where} is a range [low, high] with low <= high, got {value!r}")
        if key in ("rt60_s", "room_m", "distance_m") and value[0] <= 0:
            raise ParamError(f"{where} must be positive, got {value!r}")
        return [float(v) for v in value]
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise ParamError(f"{where} is a number >= 0, got {value!r}")
    return type(defaults[key])(value)


def _check_robustness(values: dict) -> None:
    for key, valid in (("robust_noises", NOISE_KINDS), ("robust_languages", ASTERISK_LANGUAGES)):
        for v in values[key]:
            if v not in valid:
                raise ParamError(f"parameter {key}: {choices_hint(v, valid)}")
    snrs = values["robust_snrs"]
    if not snrs or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in snrs):
        raise ParamError(f"parameter robust_snrs must be a non-empty list of numbers (dB), got {snrs!r}")
    if values["robust_channels"] is not None:
        try:
            channel_recipe(values["robust_channels"])
        except ParamError as e:
            raise ParamError(f"parameter robust_channels: {e}") from None
    held, voices = values["held_out_voice"], values["voices"]
    engines = sorted({v.split(":", 1)[0] + ":*" for v in voices if ":" in v})
    if held is not None and held not in voices + engines:
        raise ParamError(f"parameter held_out_voice: {choices_hint(held, voices + engines)} (one of `voices`, or "
                         "<engine>:* for all of one engine's)")


def describe() -> str:
    """The parameter reference (used in the README and by ``claspkit params``)."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for k, v in SCHEMA.items():
        choice = f" ({' / '.join(v.choices)})" if v.choices else ""
        rows.append(f"| `{k}` | `{v.default!r}` | {v.help}{choice} |")
    return "\n".join(rows)
