"""The few names every stage shares, defined once (the modules import them from here)."""

__all__ = [
    "SAMPLE_RATE", "ROLES", "BACKBONE_ROLES", "LOSSES", "PAPER_FUSIONS", "FRAME_FUSIONS", "FUSIONS", "IMAGE_RUNTIMES",
    "ENGINES", "NOISE_KINDS", "BABBLE_TALKERS", "ASTERISK_LANGUAGES", "BACKBONE_PATTERN", "BACKBONES",
    "CHANNEL_STAGES", "CHANNEL_PARAMS", "CODEC_KBPS", "CHANNEL_RECIPES",
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
NOISE_KINDS = ("white", "babble")            # additive noise: the robustness sweep and the training copies
BABBLE_TALKERS = 4                           # other clips summed into one babble noise (claspkit.data.augment.noise)
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

# The simulated recording channels a recipe may name (claspkit.data.augment.recipe), as data so that config checks
# `robust_channels` without importing the audio code: name -> (stage, default parameters, the parameters drawn from
# a list). A [low, high] default is a range drawn uniformly; ``p`` is the chance the channel is applied at all.
CHANNEL_STAGES = ("speed", "room", "noise", "gain", "transmission")    # the order a recording meets them
CHANNEL_PARAMS = {
    "speed": ("speed", {"p": 1.0, "factors": [0.9, 1.0, 1.1]}, ("factors",)),
    "room": ("room", {"p": 1.0, "rt60_s": [0.2, 0.8], "room_m": [3.0, 10.0], "distance_m": [0.5, 3.0]}, ()),
    "noise": ("noise", {"p": 1.0, "kinds": ["white", "babble"], "snr_db": [5.0, 30.0], "talkers": BABBLE_TALKERS},
              ("kinds",)),
    "gain": ("gain", {"p": 1.0, "db": [-20.0, 6.0]}, ()),
    "telephone": ("transmission", {"p": 1.0, "highpass_hz": 300.0}, ()),
    "mu_law": ("transmission", {"p": 1.0, "highpass_hz": 300.0}, ()),
    "g722": ("transmission", {"p": 1.0}, ()),
    "mp3": ("transmission", {"p": 1.0, "kbps": [16, 24, 32]}, ("kbps",)),
    "opus": ("transmission", {"p": 1.0, "kbps": [8, 12, 16]}, ("kbps",)),
}
CODEC_KBPS = {"mp3": (8, 160), "opus": (6, 256), "g722": (64, 64)}    # whole kbit/s each codec's encoder takes
CHANNEL_RECIPES = {
    "rooms": {"room": {}},
    "phone": {"telephone": {}, "mu_law": {}, "g722": {}},
    "codecs": {"mp3": {}, "opus": {}},
    # toward real recordings: half the clips in a room, noise, a level, and one of the five transmission channels
    "real": {"speed": {}, "room": {"p": 0.5}, "noise": {}, "gain": {},
             **{k: {"p": 0.8} for k, (stage, _, _) in CHANNEL_PARAMS.items() if stage == "transmission"}},
}
