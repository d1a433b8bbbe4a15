"""One registry of the frozen encoders CLASP builds on, in the spirit of timm's ``create_model``.

``create_backbone(role, name, **kw)`` returns an encoder with ``name, role, dim, sample_rate``
(audio roles), ``cache_id`` (changes whenever the weights or the preprocessing change),
``weight_bytes`` and ``encode(items) -> float32 (n, dim)``; ASR encoders have
``transcribe(waveforms, language=None) -> list[str]`` instead. Speech and image encoders take
16 kHz mono waveforms (the image encoder draws its own spectrogram); text encoders take strings
and return L2-normalised rows. ``list_backbones(role)`` lists the entries.

Two sources share one interface:

* **offline**: weights that install as pip packages, sha256-checked by ``claspkit.encoders.weights``.
  They are the default of every preset except ``paper``, so every notebook runs on a fresh machine.
* **hub**: the paper's checkpoints (HuBERT, wav2vec2, LaBSE, XLM-R, EfficientNet-B7) and any
  Hugging Face id or local folder (``hf:``, ``st:``, ``hf-ctc:`` prefixes), loaded with the real
  ``from_pretrained``. They need a network the first time; without one, and with nothing cached,
  they fail at once with a BackboneError rather than after the hub client's retries.

Pooling. Speech: the mean of the last hidden states over the *valid* frames of each item (padding
excluded), the paper's recipe. Inputs longer than 30 s are cut into 30 s windows, each window is
pooled, and the windows are averaged weighted by their valid frames (= the mean over all valid
frames). Whisper's encoder has no attention mask, so each window is zero-padded to a length that
depends only on itself (the next whole second), never on the other items in its batch: an item's
embedding does not depend on what it was batched with, which the content-addressed feature cache
relies on. Hub models whose feature extractor takes no attention mask (wav2vec2-base) are run one
item per forward pass for the same reason.

Frames. Speech encoders also have ``encode_frames(waves) -> list of (T_i, dim) float32``: the same
valid frames, averaged ``frame_pool`` (default 4: 80 ms) at a time, windows concatenated, under their
own ``frames_cache_id``; the ``attention`` fusion head reads them (``claspkit.encoders.frames``).

Whisper runs through CTranslate2 with int8 weights on CPU: measured 1.4x faster than float32 on 2
cores, cosine 0.998 to the float32 embedding, and bit-identical whatever the batch composition
(float32 differs by ~1e-5 between batch sizes). ``StorageView.from_array`` accepts only float32,
C-contiguous arrays (float64 and strided views raise ValueError), so features are converted first.
Measured padding effect on a 3.7 s clip: 5 s of extra zeros moves its embedding to cosine 0.993,
padding to 30 s to 0.984, which is why the padding is per item. Whisper's mean-pooled embedding is
length-sensitive (its positional embeddings dominate): a sentence repeated four times has cosine
about 0.55 with a single copy.

Images: ``claspkit.encoders.spectrogram`` draws a 224x224 image (600x600 for EfficientNet-B7, its native
size; ``image_size=`` overrides) normalised the way the network was trained.

Code: the registry in ``_registry``, what the families share in ``_common``, hub loading in ``_hub``, one module
per family (``_speech``, ``_image``, ``_text``, ``_asr``); importing this module registers them all.
"""
from claspkit.encoders import _speech, _image, _text, _asr  # noqa: F401 (each registers its backbones, in this order)
from claspkit.encoders._asr import CTCASR, WhisperASR
from claspkit.encoders._common import WINDOW_S, Encoder, cpu_threads
from claspkit.encoders._image import ONNX_EXPORT_VERSION, SpectrogramImageEncoder
from claspkit.encoders._registry import (
    PATTERN, Entry, check_backbone, create_backbone, is_multilingual, list_backbones, register,
)
from claspkit.encoders._speech import HFSpeechEncoder, WhisperSpeechEncoder
from claspkit.encoders._text import TextEncoder
from claspkit.encoders.frames import whisper_frame_count

__all__ = [
    "WINDOW_S", "PATTERN", "Entry", "register", "list_backbones", "check_backbone", "is_multilingual",
    "create_backbone", "cpu_threads", "Encoder", "whisper_frame_count", "WhisperSpeechEncoder", "HFSpeechEncoder",
    "ONNX_EXPORT_VERSION", "SpectrogramImageEncoder", "TextEncoder", "WhisperASR", "CTCASR",
]
