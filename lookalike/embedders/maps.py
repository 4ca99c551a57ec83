"""Feature maps before pooling: where in a photo a CNN embedder's vector comes from (lookalike.explain reads them).

A CNN embedder that can show its map has `feature_map(image)`: the (channels, height, width) map its vector is the
global pool of, computed on the whole upright photo (no centre crop) so that the map covers all of it. Models whose
vector is not a pooled map (CLIP's projection, colour histograms, perceptual hashes, an autoencoder's bottleneck,
VGG16's fully connected layers fc6 and fc7) have none and say so.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.errors import RequestError

MAX_ASPECT = 2.0  # a panorama is squeezed to twice as long as high (the map stays a few cells across)
Maps = npt.NDArray[np.float32]


class NoFeatureMapError(RequestError):
    """An embedder whose vector is not pooled from a convolutional map (explain needs one)."""


class SpatialEmbedder(Protocol):
    name: str

    def feature_map(self, image: Any) -> Maps:
        """The (channels, height, width) map this embedder's vector is pooled from."""
        ...


def spatial(embedder: Any) -> SpatialEmbedder:
    """The embedder as one that shows its feature map; NoFeatureMapError when its model has none."""
    if callable(getattr(embedder, "feature_map", None)) and getattr(embedder, "has_feature_map", True):
        return embedder  # type: ignore[no-any-return]
    raise NoFeatureMapError(f"{embedder.name} has no spatial feature map (its vector is not pooled from a "
                            "convolutional map), so it cannot show which regions make two photos similar: explain "
                            "works with an index of an EfficientNet-Lite model (the default), or of resnet50 or vgg16 "
                            "at a pooled layer (layer3, layer4, pool5; see `lookalike models`)")


def map_input(photo: Image.Image, side: int) -> npt.NDArray[np.uint8]:
    """The whole photo (RGB) resized so its shorter side is `side` (the longer at most MAX_ASPECT times that)."""
    scale = side / min(photo.width, photo.height)
    size = (min(round(photo.width * scale), round(side * MAX_ASPECT)),
            min(round(photo.height * scale), round(side * MAX_ASPECT)))
    return np.asarray(photo.convert("RGB").resize(size, Image.Resampling.BILINEAR))
