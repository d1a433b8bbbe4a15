"""Read any audio file as the 16 kHz mono float32 waveform every encoder expects, or refuse it clearly.

The authors read each file, peak-normalised it and resampled it for the SSL model; they also fed
22.05 kHz TTS audio to wav2vec2 as if it were 16 kHz. Here every file goes through one path:
read (soundfile; PyAV's FFmpeg for m4a) -> checks -> downmix -> resample (torchaudio) -> peak
normalisation, so no encoder ever sees the wrong rate, and a bad file fails loudly instead of
becoming a silent junk embedding.

What happens to each kind of input (docs/bad-input.md copies this table):

| input | behaviour |
|---|---|
| m4a / AAC (and other formats libsndfile lacks) | decoded with PyAV's bundled FFmpeg; wav, flac, ogg/opus and mp3 go through libsndfile |
| stereo / multichannel | downmixed to mono (mean of the channels) |
| any sample rate (8 kHz, 22.05 kHz, 44.1 kHz, 48 kHz...) | resampled to 16 kHz with ``torchaudio.functional.resample`` (windowed sinc, width 6, rolloff 0.99) |
| any level | peak-normalised: divided by its largest absolute sample, so the peak is exactly 1.0 (as the authors did); loudness then carries no information |
| clipped (more than 0.1 % of samples on flat tops at full scale, >= 0.999) | accepted, with a ``ClippedAudioWarning`` naming the file: the content is usually still intelligible |
| very long (e.g. an hour) | accepted (an hour at 16 kHz is 230 MB of float32); ``max_seconds`` reads only the start. Speech encoders split long input into 30 s windows |
| empty (no samples) | ``AudioError``: "... is empty" |
| unreadable / corrupt / not audio | ``AudioError`` naming the file and the decoder's reason |
| NaN or infinite samples | ``AudioError``: "... contains NaN or infinite samples" |
| silent (peak below 1e-4, i.e. -80 dBFS) | ``AudioError``: "... is silent" |
| missing file | ``DataMissingError`` naming the path |

Every error names the file and what to do about it.
"""  # noqa: E501
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from claspkit.constants import SAMPLE_RATE
from claspkit.errors import AudioError, DataMissingError, ParamError
from claspkit.paths import display_path

__all__ = [
    "SILENCE_PEAK", "CLIP_LEVEL", "CLIP_FRACTION", "CLIP_MIN_SAMPLES", "ClippedAudioWarning",
    "validate_waveform", "resample", "peak_normalize", "read_with_ffmpeg", "load_audio",
]

SILENCE_PEAK = 1e-4          # -80 dBFS: below this there is nothing for an encoder to hear
CLIP_LEVEL = 0.999           # |x| at or above this counts as a full-scale (clipped) sample
CLIP_FRACTION = 1e-3         # more than 0.1 % of samples at full scale -> warn
CLIP_MIN_SAMPLES = 8         # ...and at least this many (a few full-scale peaks are normal)


class ClippedAudioWarning(UserWarning):
    """A file with many full-scale samples: used, but the user should know."""


def _name(name) -> str:
    return display_path(name) if isinstance(name, Path) else str(name)


def _clipped_samples(x: np.ndarray) -> int:
    """Full-scale samples equal to their predecessor: the flat tops clipping leaves.

    Counting merely loud samples would flag a clean full-scale sine (or any peak-normalised file);
    a clipped signal instead sits on the same extreme value for several samples in a row.
    """
    a = np.abs(x)
    flat = (a[1:] >= CLIP_LEVEL) & (x[1:] == x[:-1])
    return int(np.count_nonzero(flat))


def validate_waveform(x: np.ndarray, sr: int, name="<waveform>") -> np.ndarray:
    """Check a waveform (1-D, or 2-D frames x channels) and return it as float32.

    Raises ``AudioError`` for empty, non-finite or silent input; warns for clipped input.
    ``name`` (a path or a label) is put in every message so the user knows which item failed.
    """
    label = _name(name)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise AudioError(f"{label}: audio must be numeric samples, got dtype {x.dtype}; pass a float array")
    if x.ndim not in (1, 2):
        raise AudioError(f"{label}: expected a 1-D waveform (or frames x channels), got shape {x.shape}; "
                         "pass one clip at a time")
    if x.size == 0:
        raise AudioError(f"{label} is empty (0 samples); re-record or re-export it, or drop it from the manifest")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise AudioError(f"{label} contains NaN or infinite samples ({bad} of {x.size}); "
                         "re-export it (e.g. as 16-bit PCM WAV) or drop it from the manifest")
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise AudioError(f"{label} is silent (peak {peak:.2g} < {SILENCE_PEAK:g}, i.e. below -80 dBFS, "
                         f"{x.shape[0] / sr:.2f} s at {sr} Hz); check the recording or drop it from the manifest")
    n_clip = _clipped_samples(x)
    if n_clip >= CLIP_MIN_SAMPLES and n_clip > CLIP_FRACTION * x.size:
        warnings.warn(f"{label} is clipped: {n_clip} of {x.size} samples ({100 * n_clip / x.size:.1f} %) "
                      "are at full scale; it is used as is, but re-record at a lower level if you can",
                      ClippedAudioWarning, stacklevel=2)
    return x


def resample(x: np.ndarray, orig_sr: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 waveform (torchaudio's windowed sinc)."""
    if orig_sr == sr:
        return x
    import torch
    import torchaudio.functional as AF

    with torch.inference_mode():
        y = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), int(orig_sr), int(sr))
    return y.numpy()


def peak_normalize(x: np.ndarray, name="<waveform>") -> np.ndarray:
    """Scale so the largest absolute sample is 1.0 (the authors' normalisation)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak < SILENCE_PEAK:
        raise AudioError(f"{_name(name)} is silent after downmixing (peak {peak:.2g}); "
                         "the channels may cancel out: check the recording or drop it")
    return (x / peak).astype(np.float32, copy=False)


def read_with_ffmpeg(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """(frames x channels float32, rate) through PyAV's bundled FFmpeg: m4a/AAC, and whatever libsndfile lacks.

    libsndfile reads wav, flac, ogg/opus and mp3 but not MP4 containers. PyAV ships FFmpeg in its
    wheel (it is already here for faster-whisper), so no system ffmpeg is needed. Only the sample
    format is converted (to float); downmixing and resampling stay in ``load_audio``'s one path.
    Raises ``AudioError`` with FFmpeg's reason.
    """
    try:
        import av
    except ImportError as e:
        raise AudioError("PyAV is not installed (`pip install av`)") from e
    try:
        with av.open(path if hasattr(path, "read") else str(path)) as container:     # a path or a file object
            if not container.streams.audio:
                raise AudioError("no audio stream in the file")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")        # keeps the layout and the rate
            chunks, rate, have = [], None, 0
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    rate = rate or out.sample_rate
                    chunks.append(out.to_ndarray())
                    have += chunks[-1].shape[1]
                if max_seconds is not None and rate and have >= max_seconds * rate:
                    break
    except av.FFmpegError as e:
        raise AudioError(str(e)) from e
    if not chunks:
        return np.zeros((0, 1), np.float32), int(stream.rate or SAMPLE_RATE)
    data = np.concatenate(chunks, axis=1).T
    if max_seconds is not None:
        data = data[:int(round(max_seconds * rate))]
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def load_audio(path, sr: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Read ``path`` as a mono float32 waveform at ``sr`` Hz, peak-normalised to 1.0.

    ``max_seconds`` keeps only the first seconds (read without decoding the rest).
    See the module docstring for what happens to stereo, other rates, clipped, long and bad files.
    """
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise ParamError(f"sr must be a positive integer sample rate, got {sr!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ParamError(f"max_seconds must be positive or None, got {max_seconds!r}")
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(f"audio file {display_path(path)} does not exist; check the path "
                               "(manifest paths are relative to the data folder)")
    try:
        info = sf.info(str(path))
        frames = -1 if max_seconds is None else int(round(max_seconds * info.samplerate))
        data, file_sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as e:
        try:
            data, file_sr = read_with_ffmpeg(path, max_seconds)
        except AudioError as e2:
            raise AudioError(f"cannot read {display_path(path)} as audio (soundfile: {e}; FFmpeg: {e2}); it is "
                             "corrupt or in an unsupported format: re-export it as WAV or FLAC, or drop it from "
                             "the manifest") from e
    data = validate_waveform(data, file_sr, path)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = resample(np.ascontiguousarray(mono, dtype=np.float32), file_sr, sr)
    return peak_normalize(mono, path)
