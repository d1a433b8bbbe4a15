"""Training augmentation: simulated recording channels, cached as derived audio, and frame masking.

TTS speech is clean and studio-like; real recordings pass through rooms, noise, levels, phone lines and
codecs. Each module simulates one family (``noise``: additive noise, speed, gain; ``rooms``: reverberation;
``codecs``: telephone, mu-law, G.722, MP3, Opus), ``recipe`` combines them per clip with seeded draws,
``copies`` caches the results content-addressed, and ``masking`` perturbs cached frame features at train time.
"""
from claspkit.lazy import lazy_api

_API = {
    "PEAK": "base",
    "NOISE_KINDS": "noise",
    "mix_at_snr": "noise",
    "white_noise": "noise",
    "babble_noise": "noise",
    "change_speed": "noise",
    "apply_gain": "noise",
    "room_impulse_response": "rooms",
    "reverberate": "rooms",
    "schroeder_rt60": "rooms",
    "telephone": "codecs",
    "mu_law": "codecs",
    "codec_roundtrip": "codecs",
    "CHANNELS": "recipe",
    "RECIPES": "recipe",
    "Recipe": "recipe",
    "apply_recipe": "recipe",
    "augmented_copies": "copies",
    "channel_copies": "copies",
    "mask_frames": "masking",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
