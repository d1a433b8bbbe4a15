"""Search-tool fixtures, shared by the index/search/embed and CLI tests (loaded by conftest's pytest_plugins):
fake backbones that count what they encode, a tiny real fusion checkpoint, and a library of good and bad files."""
import hashlib

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import espeak_waves, write_m4a

from claspkit.model import clasp as M
from claspkit.search import query as S

SR = 16000
SENTENCES = ["The steam engine changed how people worked.", "Rivers were the first roads of trade.",
             "Please close the window before you leave.", "Bread is baked early in the morning.",
             "The committee will vote on the budget next week."]
DIMS = {"speech": 8, "image": 6, "text": 16}


class FakeEncoder:
    """Deterministic stand-in for a backbone; counts the items it encodes."""

    def __init__(self, role, name):
        self.role, self.name, self.dim = role, name, DIMS[role]
        self.sample_rate = SR
        self.cache_id = f"{name}/v1"
        self.items = 0
        self.fail_at = None            # raise when the running item count would pass this

    def encode(self, items):
        if self.fail_at is not None and self.items + len(items) > self.fail_at:
            raise RuntimeError("simulated crash inside the encoder")
        self.items += len(items)
        if self.role == "text":
            seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in items]
            return np.stack([np.random.default_rng(s).standard_normal(self.dim) for s in seeds]).astype(np.float32)
        out = []
        for w in items:
            spec = np.abs(np.fft.rfft(w, n=4096))
            bands = np.array([b.mean() for b in np.array_split(spec, self.dim - 2)])
            out.append(np.concatenate([[len(w) / SR, float(np.sqrt(np.mean(w ** 2)))], np.log1p(bands)]))
        return np.asarray(out, np.float32)


class FakeASR:
    """Stand-in for a whisper backbone: names each segment by the sentence whose length is nearest (``known``),
    its words evenly spread from 0.3 s to 0.3 s before the end; counts the segments it transcribes."""

    def __init__(self, name, language="en"):
        self.role, self.name, self.language = "asr", name, language
        self.cache_id, self.words_cache_id = f"{name}/v1", f"{name}/words-v1"
        self.scored_cache_id = f"{name}/scored-v1"
        self.items = 0
        self.fail_at = None
        self.known = {}                  # sentence -> seconds

    def transcribe_words(self, waves, language=None):
        if self.fail_at is not None and self.items + len(waves) > self.fail_at:
            raise RuntimeError("simulated crash inside the ASR")
        self.items += len(waves)
        out = []
        for w in waves:
            dur = len(w) / SR
            text = min(self.known, key=lambda t: abs(self.known[t] - dur)) if self.known else "hello there"
            words = text.split()
            step = max(dur - 0.6, 0.1) / len(words)
            out.append({"text": text, "words": [(x, 0.3 + i * step, 0.3 + (i + 1) * step)
                                                for i, x in enumerate(words)]})
        return out


    def transcribe_scored(self, waves, language=None):
        """The same text, confident when the segment is loud enough to be speech (silence: no words)."""
        out = []
        for w, t in zip(waves, self.transcribe_words(waves, language)):
            loud = float(np.sqrt(np.mean(np.square(w)))) > 1e-3
            out.append({"text": t["text"] if loud else "", "avg_logprob": -0.2 if loud else -1.5,
                        "no_speech_prob": 0.01 if loud else 0.9, "compression_ratio": 1.2})
        return out


class Fakes(dict):
    def __init__(self):
        super().__init__()
        self.options = {}          # role -> the options the last create_encoder call passed

    def __call__(self, role, name, **options):
        self.options[role] = options
        if role == "asr":
            if name == "no-words":
                return object()
            return self.setdefault((role, name), FakeASR(name, **options))
        if (role, name) not in self:
            self[(role, name)] = FakeEncoder(role, name)
        enc = self[(role, name)]
        enc.cache_id = enc.cache_id.removesuffix("-ort") + ("-ort" if options.get("runtime") == "onnx" else "")
        return enc

    def items_of(self, role):
        return sum(e.items for (r, _), e in self.items() if r == role)


@pytest.fixture
def fakes(monkeypatch):
    f = Fakes()
    monkeypatch.setattr(M, "create_encoder", f)
    S.clear_caches()
    yield f
    S.clear_caches()


def make_checkpoint(path, seed=0, branches="combined"):
    from claspkit.model.fusion import build_fusion
    from claspkit.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    cfg = {"fusion": "concat", "branches": branches, "speech_dim": DIMS["speech"],
           "image_dim": DIMS["image"], "out_dim": DIMS["text"], "dropout_scale": 1.0}
    model = build_fusion(cfg).eval()
    return save_checkpoint(path, model, {"speech_backbone": "fake-speech", "image_backbone": "fake-image",
                                         "text_backbone": "fake-text"})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model-a")


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return espeak_waves(tmp_path_factory.mktemp("voice"), SENTENCES)


def gap(s=1.0):
    return np.zeros(int(s * SR), np.float32)


def write(path, *parts, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate([gap(0.5), *parts, gap(0.5)]), SR, format=fmt)


@pytest.fixture
def library(tmp_path, voice):
    """3 good files (4 segments), 3 bad ones, 1 without speech, 1 non-audio file."""
    lib = tmp_path / "lib"
    write(lib / "a.wav", voice[0], gap(1.5), voice[1])
    write(lib / "b.flac", voice[2], fmt="FLAC")
    write_m4a(lib / "sub" / "c.m4a", np.concatenate([gap(0.5), voice[3], gap(0.5)]), SR)   # AAC: the FFmpeg path
    (lib / "empty.wav").write_bytes(b"")
    (lib / "broken.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    sf.write(lib / "silent.wav", gap(2.0), SR)
    t = np.arange(2 * SR) / SR
    sf.write(lib / "tone.ogg", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, format="OGG")
    (lib / "notes.txt").write_text("not audio")
    return lib
