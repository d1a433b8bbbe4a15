"""The few names every stage shares, defined once (the modules import them from here)."""

__all__ = ["SAMPLE_RATE", "ROLES", "BACKBONE_ROLES", "LOSSES", "PAPER_FUSIONS", "FRAME_FUSIONS", "FUSIONS"]

SAMPLE_RATE = 16000                          # every waveform claspkit handles: 16 kHz mono float32
ROLES = ("speech", "image", "text")          # the features a fusion head is trained on
BACKBONE_ROLES = ROLES + ("asr",)            # every kind of backbone the registry holds
LOSSES = ("contrastive", "huber")            # CLASP and LASP
PAPER_FUSIONS = ("concat", "gating")         # the paper's heads: the Stage-2 grid of notebook 03
FRAME_FUSIONS = ("attention", "stats")        # heads beyond the paper that read the speech frame features
FUSIONS = PAPER_FUSIONS + FRAME_FUSIONS       # every head the `fusion` knob may name
