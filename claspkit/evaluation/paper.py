"""The paper's published numbers, typed once, so every table that compares with them reads one source.

Source: CLASP (ECIR 2025), Table 2 "Different stages of evaluation on our test dataset" and the
Results section (model size and speed). meanR was only reported for stages 3 and 4, so it is None
elsewhere (a blank, never a guess). Stages 1-2 used the 5-random-candidates protocol, stages 3-4
the full test set as the gallery (about 11K items).
"""
from __future__ import annotations

import pandas as pd

__all__ = [
    "PAPER", "PAPER_PROTOCOL", "METRICS", "CLASP_SIZE_GB", "CASCADE_SIZE_GB", "SPEED_GAIN", "published_table2",
    "claims",
]

PAPER = "CLASP: Contrastive Language-Speech Pretraining for Multilingual Multimodal Information Retrieval (ECIR 2025)"

# protocol of each stage in the paper (names follow claspkit.evaluation.metrics)
PAPER_PROTOCOL = {1: "candidates", 2: "candidates", 3: "full", 4: "full"}

# (stage, system, HITS@1, MRR, meanR, Macro-F1) -- paper Table 2, in the table's row order
_TABLE2 = [
    (1, "Spectrogram-Based Model", 0.399, 0.610, None, 0.574),
    (1, "Self-Supervised Audio Model", 0.904, 0.947, None, 0.747),
    (1, "Combined Audio-Spectrogram Model", 0.935, 0.965, None, 0.792),
    (2, "XLM-RoBERTa + Wav2Vec2 - Gating", 0.850, 0.912, None, 0.594),
    (2, "XLM-RoBERTa + Wav2Vec2 - Concatenation", 0.866, 0.922, None, 0.801),
    (2, "LaBSE + Wav2Vec2 - Gating", 0.949, 0.972, None, 0.700),
    (2, "LaBSE + Wav2Vec2 - Concatenation", 0.966, 0.982, None, 0.858),
    (2, "XLM-RoBERTa + HuBERT - Gating", 0.993, 0.996, None, 0.835),
    (2, "XLM-RoBERTa + HuBERT - Concatenation", 0.996, 0.997, None, 0.950),
    (2, "LaBSE + HuBERT - Gating", 0.998, 0.999, None, 0.893),
    (2, "LaBSE + HuBERT - Concatenation", 0.999, 0.999, None, 0.956),
    (3, "LASP (ours)", 0.878, 0.909, 9.092, 0.534),
    (3, "Wav2Vec2 ASR", 0.927, 0.939, 38.300, 0.678),
    (3, "CLASP (ours)", 0.940, 0.955, 7.710, 0.710),
    (3, "HuBERT ASR", 0.953, 0.963, 17.840, 0.679),
    (4, "Persian", 0.794, 0.848, 26.960, 0.670),
    (4, "German", 0.812, 0.863, 21.637, 0.671),
    (4, "French", 0.849, 0.892, 16.100, 0.718),
    (4, "Chinese", 0.822, 0.871, 27.125, 0.743),
]

METRICS = ("hits@1", "mrr", "meanr", "macro_f1")

# Results section: "CLASP's size is about 1.5 GB, substantially smaller than the 3.15 GB HuBERT-ASR
# pipeline" and "inference speed (improved by around 10%)". 1.5 GB matches HuBERT-large + EfficientNet-B7
# + the fusion head; 3.15 GB matches HuBERT-large (CTC) + LaBSE, i.e. the query-side text encoder is
# counted for the cascade only (CLASP's gallery side needs no text encoder).
CLASP_SIZE_GB = 1.5
CASCADE_SIZE_GB = 3.15  # the HuBERT-ASR pipeline
SPEED_GAIN = 0.10  # CLASP about 10% faster at inference than the HuBERT-ASR pipeline


def published_table2() -> pd.DataFrame:
    """The published Table 2 as a DataFrame: stage, system, protocol, hits@1, mrr, meanr, macro_f1."""
    rows = [{"stage": s, "system": name, "protocol": PAPER_PROTOCOL[s],
             **dict(zip(METRICS, values))} for s, name, *values in _TABLE2]
    return pd.DataFrame(rows, columns=["stage", "system", "protocol", *METRICS])


def claims() -> dict:
    """The size and speed claims, with the ratios they imply."""
    return {"clasp_size_gb": CLASP_SIZE_GB, "cascade_size_gb": CASCADE_SIZE_GB,
            "size_ratio": CASCADE_SIZE_GB / CLASP_SIZE_GB, "speed_gain": SPEED_GAIN}
