"""Fake backbones and a tiny on-disk corpus of tones, for tests that run the pipeline without real models."""
import hashlib

import numpy as np
import pandas as pd
import soundfile as sf

SR = 16000


def tone(seconds, freq=220.0, seed=0, amp=0.3):
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (amp * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


def tone_files(folder, n: int) -> list:
    """``n`` PCM16 tone clips of different lengths and pitches (c0.wav...), for the derived-audio tests."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"c{i}.wav" for i in range(n)]
    for i, p in enumerate(paths):
        sf.write(p, tone(0.5 + 0.1 * i, 180 + 40 * i, i), SR, subtype="PCM_16")
    return paths


class FakeFrameEncoder:
    """A speech backbone with both views: 80 ms steps of simple waveform statistics, and their mean."""

    role, sample_rate, name = "speech", SR, "fake-frames"

    def __init__(self, dim=6, frame_pool=4, scale=1.0):
        self.dim, self.frame_pool, self.scale = dim, frame_pool, scale
        self.cache_id = "fake-frames/mean-v1"
        self.frames_cache_id = f"fake-frames/frames-pool{frame_pool}-v1"
        self.calls = []

    def encode_frames(self, waves):
        self.calls.append(len(waves))
        step = 320 * self.frame_pool
        out = []
        for w in waves:
            chunks = [w[s:s + step] for s in range(0, len(w), step)]
            stats = [[np.sqrt(np.mean(c ** 2)), np.mean(np.abs(np.diff(np.sign(c)))) if len(c) > 1 else 0.0,
                      c.mean(), np.abs(c).max(), len(c) / step, s / 10] for s, c in enumerate(chunks)]
            out.append(self.scale * np.resize(np.asarray(stats, np.float32), (len(chunks), self.dim)))
        return out

    def encode(self, waves):
        return np.stack([f.mean(0) for f in self.encode_frames(waves)])



def fake_manifest(tmp_path, monkeypatch, n=36):
    """36 tone clips (train 24 / val 6 / test 6) under an isolated CLASPKIT_DATA, texts 'sentence <i>'."""
    data = tmp_path / "data"
    monkeypatch.setenv("CLASPKIT_DATA", str(data))
    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))
    (data / "audio").mkdir(parents=True)
    rows = []
    for i in range(n):
        sf.write(data / "audio" / f"x{i}.wav", tone(0.4 + 0.05 * (i % 7), 150 + 37 * i, i), SR, subtype="PCM_16")
        rows.append({"id": f"x{i}", "path": f"audio/x{i}.wav", "text": f"sentence {i}",
                     "split": "train" if i < 24 else "val" if i < 30 else "test"})
    return pd.DataFrame(rows)


class FakeImage(FakeFrameEncoder):
    role, name = "image", "fake-image"

    def __init__(self):
        super().__init__(dim=5)
        self.cache_id = "fake-image/v1"


class FakeText:
    role, name, dim, cache_id = "text", "fake-text", 8, "fake-text/v1"

    def encode(self, texts):
        return np.stack([np.random.default_rng(_seed(t)).standard_normal(8) for t in texts]).astype(np.float32)


def _seed(text):
    """'sentence <i>' -> i (the corpus's texts); any other text -> a digest of it."""
    last = text.split()[-1] if text.split() else ""
    return int(last) if last.isdigit() else int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def fake_factory(options: dict):
    """A create_backbone stand-in: fake encoders by role, recording the options each role was made with."""
    def create(role, name, **kw):
        options[role] = kw
        return {"speech": lambda: FakeFrameEncoder(frame_pool=kw.get("frame_pool", 4)), "image": FakeImage,
                "text": FakeText}[role]()
    return create


def concat_checkpoint(path, branches="combined", seed=0):
    """A real (untrained) concat head over the fake backbones' dims, saved as a checkpoint."""
    import torch

    from claspkit.model.fusion import build_fusion
    from claspkit.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    head = build_fusion({"fusion": "concat", "branches": branches, "speech_dim": 6, "image_dim": 5,
                         "out_dim": 8}).eval()
    return save_checkpoint(path, head, {"speech_backbone": "fake-speech", "image_backbone": "fake-image",
                                        "text_backbone": "fake-text", "loss": "contrastive", "lr": 1e-3})


def attention_checkpoint(path, branches="combined", fusion="attention"):
    """A real frame head (attention, or stats), trained 2 epochs on 40 tones' fake frames."""
    from claspkit.encoders.frames import Frames
    from claspkit.model.train import train

    rng = np.random.default_rng(0)
    enc = FakeFrameEncoder()
    waves = [tone(0.3 + 0.1 * (i % 5), 120 + 31 * i, i) for i in range(40)]
    arrays = {"speech": Frames(enc.encode_frames(waves), pool=4),
              "image": FakeImage().encode(waves), "text": rng.standard_normal((40, 8)).astype(np.float32)}
    half = {k: v[:20] for k, v in arrays.items()}
    rest = {k: v[20:] for k, v in arrays.items()}
    cfg = {"fusion": fusion, "branches": branches, "epochs": 2, "batch_size": 8, "attention_dim": 16,
           "attention_heads": 2, "stats_hidden": 32, "speech_backbone": "fake-speech", "image_backbone": "fake-image",
           "text_backbone": "fake-text"}
    train(cfg, half, rest, progress=False, checkpoint_dir=path)
    return path
