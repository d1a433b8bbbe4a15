"""``claspkit.CLASP``: one object for a trained model (frozen backbones, fusion head, text encoder).

The assembly lives here once: indexing (``claspkit.search.query``), ``claspkit embed`` and users who want
vectors all build a model with :meth:`CLASP.from_pretrained` and call ``encode_speech`` /
``encode_text``, the way ``SentenceTransformer(...).encode`` is used.

* **Folders.** A model is a checkpoint folder: ``config.json`` + ``model.safetensors`` (the format
  ``claspkit.model.checkpoint`` reads and writes; the sha256 of the weights is checked on load) and, when written by
  :meth:`save_pretrained`, a generated model card ``README.md``. No pickles.
* **Hub ids.** ``from_pretrained("user/repo")`` downloads the folder with ``huggingface_hub`` when a
  network is there; offline it says so and names the local-folder alternative.
* **The authors' release** (a pickled module) loads with ``trust=True`` through
  ``claspkit.model.authors_checkpoint``, into a concat head on their backbones (HuBERT-large, EfficientNet-B7
  logits, LaBSE), all of which need the hub.
* **Branches.** Only the branches the head uses are computed; a frame head (``attention``, ``stats``) gets
  the speech encoder's frames, pooled as in training. The speech and image branches run concurrently, each with
  half the cores (CTranslate2 and ONNX Runtime release the GIL); results do not depend on it.
* **Outputs** are L2-normalised float32 rows, and an item's vector is the same alone and in a padded
  batch (tested).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from claspkit.constants import FRAME_FUSIONS, ROLES
from claspkit.errors import ClaspkitError, DataMissingError, ParamError, choices_hint
from claspkit.encoders.batches import branch_features
from claspkit.paths import display_path, sha256_file

__all__ = ["CLASP", "create_encoder", "checkpoint_backbones", "NEEDS", "AUTHORS_BACKBONES",
           "LICENSES"]

NEEDS = {"combined": ("speech", "image"), "speech": ("speech",), "image": ("image",)}
CARD_FILE = "README.md"
# The paper's backbones, which the authors' released head was trained on.
AUTHORS_BACKBONES = {"speech": "hubert-large-ls960-ft", "image": "efficientnet_b7", "text": "labse"}
# Upstream licences of the weights each backbone loads (model cards of the original releases).
LICENSES = {
    "whisper-tiny.en": "MIT (OpenAI Whisper)", "whisper-base": "MIT (OpenAI Whisper)",
    "efficientnet-lite0": "Apache-2.0 (TensorFlow EfficientNet-Lite)",
    "e5-small-multilingual": "MIT (intfloat/multilingual-e5-small)",
    "muse-multilingual": "Apache-2.0 (Universal Sentence Encoder Multilingual v3)",
    "minilm-en": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
    "hubert-large-ls960-ft": "Apache-2.0 (facebook/hubert-large-ls960-ft)",
    "wav2vec2-base-960h": "Apache-2.0 (facebook/wav2vec2-base-960h)",
    "efficientnet_b7": "Apache-2.0 (timm efficientnet_b7)",
    "efficientnet_b7-pooled": "Apache-2.0 (timm efficientnet_b7)",
    "labse": "Apache-2.0 (sentence-transformers/LaBSE)",
    "xlmr-paraphrase": "Apache-2.0 (sentence-transformers/paraphrase-xlm-r-multilingual-v1)",
}


def create_encoder(role: str, name: str, **options):
    """The one place a model's backbones are created (tests replace it with fakes)."""
    from claspkit.encoders.backbones import create_backbone

    return create_backbone(role, name, **options)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


def _create_sharing(role: str, name: str, options: dict):
    """``create_encoder`` with a thread budget; backbones without a ``threads`` option get none."""
    try:
        return create_encoder(role, name, **options)
    except ParamError:
        if "threads" not in options:
            raise
        return create_encoder(role, name, **{k: v for k, v in options.items() if k != "threads"})


def checkpoint_backbones(config: dict) -> dict:
    """Backbone names a checkpoint config names: ``{"backbones": {...}}`` or ``<role>_backbone`` keys."""
    names = dict(config.get("backbones") or {})
    for role in ROLES:
        names.setdefault(role, config.get(f"{role}_backbone"))
    return names


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norms == 0):
        raise ClaspkitError(f"the {what} encoder returned zero or non-finite vectors; the backbone is broken")
    return x / norms


class CLASP:
    """A trained CLASP model: waveforms or audio files -> unit vectors in its text encoder's space."""

    def __init__(self, head, config: dict, *, source=None, image_runtime: str = "onnx"):
        from claspkit.constants import IMAGE_RUNTIMES
        from claspkit.encoders.frames import FRAME_POOL

        self.head, self.config = head.eval(), dict(config)
        self.source = None if source is None else Path(source)
        where = display_path(self.source) if self.source is not None else "this model"
        names = checkpoint_backbones(self.config)
        self.branches = self.config.get("branches", "combined")
        if self.branches not in NEEDS:
            raise ParamError(f"{where}: unknown branches {choices_hint(self.branches, tuple(NEEDS))}")
        self.needs = NEEDS[self.branches]
        missing = [r for r in (*self.needs, "text") if not names.get(r)]
        if missing:
            raise ClaspkitError(f"{where} does not name its {', '.join(missing)} backbone(s) (config.json keys "
                                f"{', '.join(r + '_backbone' for r in missing)}); retrain it with the backbone names "
                                "in the training config")
        if image_runtime not in IMAGE_RUNTIMES:
            raise ParamError(f"unknown image runtime {choices_hint(image_runtime, IMAGE_RUNTIMES)}")
        self.backbones = {r: (names[r] if r in (*self.needs, "text") else None) for r in ROLES}
        share = {"threads": max(1, _cpus() // len(self.needs))}   # the branches run concurrently
        self.frames = self.config.get("fusion") in FRAME_FUSIONS
        pool = {"frame_pool": int(self.config.get("frame_pool", FRAME_POOL))} if self.frames else {}
        options = {"speech": {**share, **pool},
                   "image": {**share, "runtime": image_runtime} if image_runtime != "torch" else {}}
        self.encoders = {r: _create_sharing(r, names[r], options[r]) for r in self.needs}
        if self.frames and not hasattr(self.encoders["speech"], "encode_frames"):
            raise ClaspkitError(f"{where} is a {self.config['fusion']} head, which needs frame features, but "
                                f"speech backbone {names['speech']} has no encode_frames; "
                                "use a speech backbone from claspkit.encoders.backbones")
        self.text = create_encoder("text", names["text"])
        self.dim = int(self.config["out_dim"])
        for role, key in (("speech", "speech_dim"), ("image", "image_dim")):
            enc = self.encoders.get(role)
            if enc is not None and int(enc.dim) != int(self.config[key]):
                raise ClaspkitError(f"backbone {enc.name} gives {enc.dim}-d {role} features but {where}'s "
                                    f"{key} is {self.config[key]}; use the model trained on {enc.name}")
        if int(self.text.dim) != self.dim:
            raise ClaspkitError(f"text backbone {self.text.name} is {self.text.dim}-d but {where} maps speech to "
                                f"{self.dim}-d; use the model trained against {self.text.name}")

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, path_or_id=None, *, image_runtime: str = "onnx", trust: bool = False,
                        revision: str | None = None, cache_dir=None, local_only: bool = False,
                        **authors_kw) -> "CLASP":
        """A checkpoint folder, a hub id (``user/repo``, downloaded unless ``local_only``), or the authors'
        pickled release (a file; ``trust=True`` required, ``authors_kw`` go to ``load_authors_checkpoint``).
        None (or the name of a model that ships with claspkit, ``claspkit.pretrained.list_pretrained()``) loads
        that shipped model, its files checked against their registered sha256.

        A name whose first part is a local folder (``runs/x``) is a path, never a hub id."""
        from claspkit.model.checkpoint import load_checkpoint
        from claspkit.pretrained import is_pretrained_name, pretrained_dir

        if path_or_id is None or (is_pretrained_name(path_or_id) and not Path(path_or_id).exists()):
            path_or_id = pretrained_dir(path_or_id)
        path = Path(path_or_id).expanduser()
        if path.is_file():
            return cls._from_authors(path, trust, image_runtime, **authors_kw)
        if not path.is_dir() and not local_only and not Path(path.parts[0] if path.parts else ".").exists():
            path = _download(str(path_or_id), revision, cache_dir)
        head, config = load_checkpoint(path)
        return cls(head, config, source=path, image_runtime=image_runtime)

    @classmethod
    def _from_authors(cls, path: Path, trust: bool, image_runtime: str, **kw) -> "CLASP":
        from claspkit.model.authors_checkpoint import load_authors_checkpoint

        head, _ = load_authors_checkpoint(path, trust=trust, **kw)
        config = {**head.config, **{f"{r}_backbone": n for r, n in AUTHORS_BACKBONES.items()},
                  "loss": "contrastive", "origin": f"the authors' release ({path.name})"}
        return cls(head, config, source=path, image_runtime=image_runtime)

    def save_pretrained(self, directory, card: dict | None = None) -> Path:
        """``config.json`` + ``model.safetensors`` + a model card (``card`` adds sections such as
        ``{"training data": "...", "test metrics": {...}}``); loads back with ``from_pretrained``."""
        from claspkit.model.checkpoint import save_checkpoint

        directory = Path(directory)
        config = {k: v for k, v in self.config.items() if k != "checkpoint"}
        extra = {k: v for k, v in (self.config.get("checkpoint") or {}).items() if k not in ("format", "files")}
        save_checkpoint(directory, self.head, config, extra={k: extra[k] for k in ("best_epoch", "history")
                                                             if k in extra})
        from claspkit.paths import atomic_write_text

        atomic_write_text(directory / CARD_FILE, self.model_card(card))
        return directory

    def model_card(self, card: dict | None = None) -> str:
        """The README.md of a saved model: what it is, its parts and their licences, how it was trained."""
        from claspkit.encoders.backbones import list_backbones

        described = {(b["role"], b["name"]): b["description"] for b in list_backbones()}
        c = self.config
        lines = ["---", "library_name: claspkit", "tags: [speech-retrieval, clasp, audio, multilingual]", "---", "",
                 f"# CLASP {c.get('fusion', '?')} head ({c.get('loss', '?')} loss)", "",
                 "A CLASP model (Abootorabi & Asgari, ECIR 2025) built with claspkit: frozen backbones and a trained "
                 f"fusion head that maps speech into the {self.backbones['text']} text space, so text queries in any "
                 "language that encoder knows retrieve the speech.", "",
                 "```python", "from claspkit import CLASP", "m = CLASP.from_pretrained(\"<this folder or hub id>\")",
                 "s = m.encode_speech([\"clip.wav\"]); t = m.encode_text([\"a query\"])",
                 "print(m.similarity(t, s))", "```", "", "## Parts", "",
                 "| role | backbone | what it is | licence |", "|---|---|---|---|"]
        for role in ROLES:
            name = self.backbones.get(role)
            if name:
                lines.append(f"| {role} | `{name}` | {described.get((role, name), '')} | "
                             f"{LICENSES.get(name, 'see the upstream model card')} |")
        n_params = sum(p.numel() for p in self.head.parameters())
        lines += [f"| fusion head | `{c.get('fusion')}` ({self.branches}) | {n_params:,} parameters, "
                  f"{c.get('speech_dim')}+{c.get('image_dim')} -> {c.get('out_dim')} | MIT (claspkit) |", "",
                  "## Training", ""]
        knobs = ("loss", "tau", "learnable_scale", "lr", "batch_size", "epochs", "patience", "seed")
        lines += [f"- `{k}`: {c[k]}" for k in knobs if k in c]
        info = c.get("checkpoint") or {}
        if info.get("best_epoch"):
            lines.append(f"- best epoch {info['best_epoch']} of {len(info.get('history', []))} (validation loss)")
        if c.get("origin"):
            lines.append(f"- origin: {c['origin']}")
        for title, body in (card or {}).items():
            lines += ["", f"## {title[:1].upper()}{title[1:]}", ""]
            if isinstance(body, dict):
                lines += [f"- {k}: {v}" for k, v in body.items()]
            else:
                lines.append(str(body))
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ identity
    @property
    def cache_ids(self) -> dict:
        """What each branch's features are (the frames' id for a frame head's speech branch)."""
        out = {r: str(e.frames_cache_id if r == "speech" and self.frames else e.cache_id)
               for r, e in self.encoders.items()}
        return {**out, "text": str(self.text.cache_id)}

    @property
    def identity(self) -> dict:
        """Names this model for an index: weights and fusion config digest, backbones, feature ids."""
        from claspkit.model.fusion import config_keys
        from claspkit.model.checkpoint import MODEL_FILE

        weights = sha256_file(self.source / MODEL_FILE) if self.source is not None and self.source.is_dir() \
            else hashlib.sha256(b"".join(v.detach().numpy().tobytes()
                                         for v in self.head.state_dict().values())).hexdigest()
        fusion = {k: self.config.get(k) for k in config_keys(self.config)}
        digest = hashlib.sha256(json.dumps({"weights": weights, "fusion": fusion}, sort_keys=True).encode())
        name = self.source.resolve().name if self.source is not None else "in-memory"
        return {"checkpoint": name, "checkpoint_sha256": digest.hexdigest(), "backbones": dict(self.backbones),
                "cache_ids": self.cache_ids}

    # ------------------------------------------------------------------ encoding
    def encode_text(self, texts: str | Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(n, dim) float32 unit vectors of ``texts`` (queries or transcripts)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise ParamError(f"encode_text takes strings, got {type(bad[0]).__name__} ({bad[0]!r})")
        parts = [np.asarray(self.text.encode(texts[a:a + batch_size])) for a in range(0, len(texts), batch_size)]
        return _unit(np.concatenate(parts), "text")

    def encode_speech(self, audio, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """(n, dim) float32 unit vectors of audio files (any format ``claspkit.data.audio`` reads, peak-normalised
        as in training) or 16 kHz mono waveforms; one file or waveform gives one row."""
        from claspkit.data.audio import load_audio, validate_waveform
        from claspkit.progress import progress_bar

        if isinstance(audio, (str, os.PathLike)) or (isinstance(audio, np.ndarray) and audio.ndim == 1):
            audio = [audio]
        items = list(audio)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParamError(f"batch_size must be a positive int, got {batch_size!r}")
        out = []
        starts = range(0, len(items), batch_size)
        for a in progress_bar(starts, total=len(starts), desc="encode speech", unit="batch", disable=not progress):
            waves = [load_audio(x) if isinstance(x, (str, os.PathLike))
                     else validate_waveform(np.asarray(x, dtype=np.float32), 16000, f"waveform {a + i}")
                     for i, x in enumerate(items[a:a + batch_size])]
            out.append(self.encode_waves(waves, batch_size))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_waves(self, waves: list[np.ndarray], batch_size: int = 16, timings: dict | None = None) -> np.ndarray:
        """(n, dim) unit vectors of n 16 kHz segments, as given (no normalisation); ``timings`` adds the
        seconds of each branch and of the head."""
        timings = timings if timings is not None else {}
        waves = list(waves)

        def run(role, enc):
            t = time.perf_counter()
            x = branch_features(enc, waves, batch_size, frames=role == "speech" and self.frames)
            return x, time.perf_counter() - t

        if not waves:
            return np.zeros((0, self.dim), np.float32)
        if len(self.encoders) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(self.encoders), thread_name_prefix="claspkit-branch") as pool:
                futures = {role: pool.submit(run, role, enc) for role, enc in self.encoders.items()}
                done = {role: f.result() for role, f in futures.items()}
        else:
            done = {role: run(role, enc) for role, enc in self.encoders.items()}
        for role, (_, seconds) in done.items():
            timings[role] = timings.get(role, 0.0) + seconds
        t = time.perf_counter()
        out = self.fuse({role: x for role, (x, _) in done.items()})
        timings["fusion"] = timings.get("fusion", 0.0) + time.perf_counter() - t
        return out

    def fuse(self, features: dict) -> np.ndarray:
        """(n, dim) unit vectors from the branches' features (``{role: branch_features(...)}``); split out so
        a distributed run (``claspkit.search.ray_index``) computes the branches elsewhere and the head here."""
        from claspkit.model.inference import embed_speech

        return embed_speech(self.head, features.get("speech"), features.get("image"))

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarities (len(a), len(b)) of two sets of vectors."""
        from claspkit.evaluation.metrics import cosine_matrix

        return cosine_matrix(a, b)

    def __repr__(self) -> str:
        parts = " + ".join(f"{r}={n}" for r, n in self.backbones.items() if n)
        return f"CLASP({self.config.get('fusion')}, {parts}, dim={self.dim})"


def _download(repo_id: str, revision: str | None, cache_dir) -> Path:
    """A hub model folder (config.json + model.safetensors), or a DataMissingError saying what to do."""
    import re

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise DataMissingError(f"{repo_id!r} is neither a model folder nor a file here, nor a hub id (user/repo); "
                               "pass the checkpoint folder, e.g. runs/tiny/checkpoints/stage3-contrastive")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                      allow_patterns=["config.json", "*.safetensors", CARD_FILE]))
    except Exception as e:  # offline, unknown repo, gated ...: one clear message
        raise DataMissingError(f"cannot fetch the hub model {repo_id!r} ({type(e).__name__}: {e}); without a network, "
                               "download the folder elsewhere and pass its local path") from None
