"""Model: the fusion heads, the losses, training, checkpoints, inference, and the ``CLASP`` object that holds
backbones + head.

``train`` is not re-exported: it is also the name of its submodule (``claspkit.model.train.train``).
"""
from claspkit.lazy import lazy_api

_API = {
    "CLASP": "clasp",
    "create_encoder": "clasp",
    "build_fusion": "fusion",
    "count_parameters": "fusion",
    "ClipLoss": "losses",
    "HuberLoss": "losses",
    "build_loss": "losses",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_checkpoint_config": "checkpoint",
    "embed_speech": "inference",
    "load_authors_checkpoint": "authors_checkpoint",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
