"""The few names every stage shares, defined once (the modules import them from here)."""

__all__ = [
    "SAMPLE_RATE", "ROLES", "BACKBONE_ROLES", "LOSSES", "PAPER_FUSIONS", "FRAME_FUSIONS", "FUSIONS", "IMAGE_RUNTIMES",
    "ENGINES", "NOISE_KINDS", "ASTERISK_LANGUAGES", "BACKBONE_PATTERN", "BACKBONES",
]

SAMPLE_RATE = 16000                          # every waveform claspkit handles: 16 kHz mono float32
ROLES = ("speech", "image", "text")          # the features a fusion head is trained on
BACKBONE_ROLES = ROLES + ("asr",)            # every kind of backbone the registry holds
LOSSES = ("contrastive", "huber")            # CLASP and LASP
PAPER_FUSIONS = ("concat", "gating")         # the paper's heads: the Stage-2 grid of notebook 03
FRAME_FUSIONS = ("attention", "stats")        # heads beyond the paper that read the speech frame features
FUSIONS = PAPER_FUSIONS + FRAME_FUSIONS       # every head the `fusion` knob may name
IMAGE_RUNTIMES = ("torch", "onnx")           # how an image CNN runs (claspkit.encoders._image)
ENGINES = ("local", "ray")                   # where audio features are computed (claspkit.encoders.engine)
NOISE_KINDS = ("white", "babble")            # noise of the robustness study (claspkit.evaluation.robustness)
ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")   # the real prompt recordings (claspkit.data.asterisk.VOICES)

# The backbone registry's names (claspkit.encoders.backbones), by role, with their source (offline: packaged
# weights; hub: a network the first time), in registration order. ``claspkit.config`` checks parameters against
# this data, so it need not import the registry; a test keeps the two equal. A name ending in BACKBONE_PATTERN
# stands for its prefix followed by any hub id or local folder.
BACKBONE_PATTERN = "<id-or-path>"
BACKBONES = {
    "speech": {"whisper-tiny.en": "offline", "whisper-base": "offline", "hubert-large-ls960-ft": "hub",
               "wav2vec2-base-960h": "hub", f"hf:{BACKBONE_PATTERN}": "hub"},
    "image": {"efficientnet-lite0": "offline", "efficientnet_b7": "hub", "efficientnet_b7-pooled": "hub"},
    "text": {"e5-small-multilingual": "offline", "muse-multilingual": "offline", "minilm-en": "offline",
             "labse": "hub", "xlmr-paraphrase": "hub", f"st:{BACKBONE_PATTERN}": "hub"},
    "asr": {"whisper-tiny.en": "offline", "whisper-base": "offline", "hubert-large-ls960-ft": "hub",
            "wav2vec2-base-960h": "hub", f"hf-ctc:{BACKBONE_PATTERN}": "hub"},
}
