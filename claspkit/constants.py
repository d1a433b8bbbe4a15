"""The few names every stage shares, defined once (the modules import them from here)."""

__all__ = ["SAMPLE_RATE", "ROLES", "BACKBONE_ROLES", "LOSSES", "PAPER_FUSIONS", "FUSIONS"]

SAMPLE_RATE = 16000                          # every waveform claspkit handles: 16 kHz mono float32
ROLES = ("speech", "image", "text")          # the features a fusion head is trained on
BACKBONE_ROLES = ROLES + ("asr",)            # every kind of backbone the registry holds
LOSSES = ("contrastive", "huber")            # CLASP and LASP
PAPER_FUSIONS = ("concat", "gating")         # the paper's heads: the Stage-2 grid of notebook 03
FUSIONS = PAPER_FUSIONS + ("attention",)     # every head the `fusion` knob may name
