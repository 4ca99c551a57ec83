"""VGG16 and ResNet50 in plain torch, with torchvision's state_dict keys, so torchvision's
ImageNet weight files load as they are. Features are tapped at a named layer (ResNet50:
layer3, layer4 (pooled = "pool5"); VGG16: pool5, fc6, fc7), exported to ONNX and run there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders.base import Matrix, channels_first, l2_normalise
from lookalike.embedders.exported import ExportedNetwork, file_digest, network_description
from lookalike.embedders.maps import map_input
from lookalike.embedders.pooling import check_pool, global_pool
from lookalike.embedders.torch_weights import find_weights, load_checked
from lookalike.errors import RequestError
from lookalike.images import DecodedImage, resize_and_crop

EXPORT_VERSION = 1
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


@dataclass(frozen=True)
class ClassicModel:
    name: str
    weight_files: tuple[str, ...]  # torchvision's file names in torch's hub cache
    layers: dict[str, int]  # tap -> feature dimension
    pooled: tuple[str, ...]  # taps that are convolutional maps (take --pool)
    default_layer: str


CLASSIC_MODELS = {
    "resnet50": ClassicModel("resnet50", ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
                             {"layer3": 1024, "layer4": 2048}, ("layer3", "layer4"), "layer4"),
    "vgg16": ClassicModel("vgg16", ("vgg16-397923af.pth",), {"pool5": 512, "fc6": 4096, "fc7": 4096},
                          ("pool5",), "fc7"),
}


def classic_layers(model: str) -> list[str]:
    return list(CLASSIC_MODELS[model].layers)


class ClassicCnnEmbedder:
    """A torchvision-layout ImageNet CNN; preprocessing as it was trained: RGB/255, ImageNet mean and std."""

    input_side = 224

    def __init__(self, model: str, weights: Path | None = None, device: str = "cpu",
                 layer: str | None = None, pool: str | None = None):
        if model not in CLASSIC_MODELS:
            raise RequestError(f"unknown model {model!r}; choose from {', '.join(CLASSIC_MODELS)}")
        self.spec = CLASSIC_MODELS[model]
        self.name = model
        self.layer = layer or self.spec.default_layer
        if self.layer not in self.spec.layers:
            raise RequestError(f"unknown layer {self.layer!r} for {model}; available: {', '.join(self.spec.layers)}")
        if self.layer in self.spec.pooled:
            self.pool = check_pool(pool or "avg")
        elif pool not in (None, "none"):
            raise RequestError(f"layer {self.layer} of {model} is already a vector; --pool applies to "
                             f"{', '.join(self.spec.pooled)} only")
        else:
            self.pool = "none"
        self.dimension = self.spec.layers[self.layer]
        self.weights = find_weights(model, self.spec.weight_files, weights)
        digest = file_digest(self.weights)[:12]
        self.network = ExportedNetwork(f"{model}-{self.layer}-{self.pool}-{digest}-export{EXPORT_VERSION}",
                                       self.build_torch_model, self.input_side, ("features",), device)

    def describe(self) -> dict[str, Any]:
        description = network_description(self.name, self.weights, EXPORT_VERSION, self.dimension, self.layer,
                                          self.pool, self.input_side, "x/255, imagenet mean/std")
        return description | {"weights_file": str(self.weights)}

    def preprocess(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        crop = resize_and_crop(image.pixels, self.input_side)
        return channels_first(crop, mean=255.0 * IMAGENET_MEAN, std=255.0 * IMAGENET_STD)

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        return l2_normalise(self.network.run(batch)[0])

    def build_torch_model(self) -> Any:
        network = load_checked(build_network(self.name), self.weights, self.name)
        return make_tap(network, self.name, self.layer, self.pool)

    @property
    def has_feature_map(self) -> bool:
        """Whether the vector is pooled from a convolutional map (layer3, layer4, pool5), which explain can show."""
        return self.layer in self.spec.pooled

    def feature_map(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        """The (channels, height, width) map this embedder pools into its vector, of the whole upright photo."""
        pixels = map_input(image.pixels, self.input_side)
        batch = channels_first(pixels, mean=255.0 * IMAGENET_MEAN, std=255.0 * IMAGENET_STD)[None]
        return self.maps_network.run(batch)[0][0]

    @functools.cached_property
    def maps_network(self) -> ExportedNetwork:
        """The network cut before pooling, any input size, exported to the cache the first time (explain)."""
        digest = file_digest(self.weights)[:12]
        return ExportedNetwork(f"{self.name}-{self.layer}-maps-{digest}-export{EXPORT_VERSION}", self._build_maps,
                               self.input_side, ("maps",), self.network.device, any_side=True)

    def _build_maps(self) -> Any:
        return make_tap(load_checked(build_network(self.name), self.weights, self.name), self.name, self.layer, None)


def build_network(model: str) -> Any:
    """The randomly initialised torch network with torchvision's parameter names."""
    return {"resnet50": _resnet50, "vgg16": _vgg16}[model]()


def make_tap(network: Any, model: str, layer: str, pool: str | None) -> Any:
    """The network up to `layer`, pooled by `pool` (None: the convolutional map itself, for explain)."""
    import torch

    class Tap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, pixels: Any) -> Any:
            if model == "resnet50":
                maps = self.network.maps(pixels, layer)
                return maps if pool is None else global_pool(maps, pool)
            return self.network.features(pixels) if pool is None else self.network.tap(pixels, layer, pool)

    return Tap().eval()


# --- the networks --------------------------------------------------------------------------------
def _vgg16() -> Any:
    from torch import nn

    class VGG16(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            channels = 3
            for item in VGG16_CONFIG:
                if item == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    channels = int(item)
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, 1000),
            )

        def forward(self, pixels: Any) -> Any:
            return self.classifier(self.avgpool(self.features(pixels)).flatten(1))

        def tap(self, pixels: Any, layer: str, pool: str) -> Any:
            maps = self.features(pixels)
            if layer == "pool5":
                return global_pool(maps, pool)
            flat = self.avgpool(maps).flatten(1)
            return self.classifier[:2](flat) if layer == "fc6" else self.classifier[:5](flat)

    return VGG16()


def _resnet50() -> Any:
    from torch import nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Any = None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x: Any) -> Any:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet50(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._stage(64, 3, 1)
            self.layer2 = self._stage(128, 4, 2)
            self.layer3 = self._stage(256, 6, 2)
            self.layer4 = self._stage(512, 3, 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(2048, 1000)

        def _stage(self, planes: int, blocks: int, stride: int) -> Any:
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride,
                                                     bias=False), nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * 4
            layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def maps(self, pixels: Any, layer: str) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(pixels))))
            x = self.layer3(self.layer2(self.layer1(x)))
            return x if layer == "layer3" else self.layer4(x)

        def forward(self, pixels: Any) -> Any:
            return self.fc(self.avgpool(self.maps(pixels, "layer4")).flatten(1))

    return ResNet50()
