"""Encoders: the frozen backbones (a registry with pinned, hashed weights) and the content-addressed
feature cache that notebook 02 fills.
"""
from claspkit.lazy import lazy_api

_API = {
    "create_backbone": "backbones",
    "list_backbones": "backbones",
    "check_backbone": "backbones",
    "is_multilingual": "backbones",
    "register": "backbones",
    "REGISTRY": "weights",
    "WeightFile": "weights",
    "verified_path": "weights",
    "SpectrogramParams": "spectrogram",
    "spectrogram_image": "spectrogram",
    "FeatureCache": "features",
    "extract_audio": "features",
    "extract_frames": "features",
    "extract_text": "features",
    "extract_manifest_features": "features",
    "Frames": "frames",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
