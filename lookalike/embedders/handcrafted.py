"""Handcrafted baselines: an HSV colour histogram and a DCT perceptual hash, no network involved.

Both do their work in preprocess() (per image, on the decoder threads); embed_batch only
normalises. They share the embedder interface so they index, search and evaluate like CNNs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy.fft import dctn

from lookalike.embedders.base import Matrix, l2_normalise
from lookalike.images import DecodedImage

HUE_BINS, SATURATION_BINS, VALUE_BINS = 16, 4, 4
HASH_SIDE, HASH_BITS_SIDE = 32, 8


class ColorHistogramEmbedder:
    """Joint HSV histogram (16 hue x 4 saturation x 4 value bins); square-rooted, so cosine is the
    Bhattacharyya coefficient between the two colour distributions."""

    name = "color-histogram"
    dimension = HUE_BINS * SATURATION_BINS * VALUE_BINS
    input_side = 128

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "version": "1", "dimension": self.dimension, "layer": "hsv", "pool": "histogram",
                "preprocessing": f"exif-upright, rgb (alpha on white), shorter side ~{self.input_side}, whole image, "
                f"hsv {HUE_BINS}x{SATURATION_BINS}x{VALUE_BINS} bins, sqrt"}

    def preprocess(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        return hsv_histogram(image.pixels)

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        return l2_normalise(np.sqrt(batch.reshape(len(batch), -1)))


class PerceptualHashEmbedder:
    """DCT pHash: 64 bits (low frequencies of a 32x32 grey image above/below their median) as a +-1 vector,
    so cosine similarity = 1 - 2 * Hamming distance / 64."""

    name = "phash"
    dimension = HASH_BITS_SIDE * HASH_BITS_SIDE
    input_side = 64

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "version": "1", "dimension": self.dimension, "layer": "dct", "pool": "median",
                "preprocessing": f"exif-upright, grey, whole image resized to {HASH_SIDE}x{HASH_SIDE}, "
                f"dct low {HASH_BITS_SIDE}x{HASH_BITS_SIDE} vs median"}

    def preprocess(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        return perceptual_hash(image.pixels).astype(np.float32) * 2.0 - 1.0

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        return l2_normalise(batch.reshape(len(batch), -1))


def hsv_histogram(image: Image.Image) -> npt.NDArray[np.float32]:
    """Normalised joint HSV histogram of an RGB image (flattened, sums to 1)."""
    hsv = np.asarray(image.convert("HSV"), dtype=np.int64).reshape(-1, 3)
    bins = (hsv[:, 0] * HUE_BINS // 256) * SATURATION_BINS * VALUE_BINS \
        + (hsv[:, 1] * SATURATION_BINS // 256) * VALUE_BINS + hsv[:, 2] * VALUE_BINS // 256
    counts = np.bincount(bins, minlength=HUE_BINS * SATURATION_BINS * VALUE_BINS).astype(np.float32)
    return counts / max(float(counts.sum()), 1.0)


def perceptual_hash(image: Image.Image) -> npt.NDArray[np.bool_]:
    """64 booleans: the 8x8 lowest DCT frequencies of the 32x32 grey image, compared with their median
    (the DC term is left out of the median, as it only measures brightness)."""
    grey = np.asarray(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(grey, norm="ortho")[:HASH_BITS_SIDE, :HASH_BITS_SIDE].ravel()
    return low > np.median(low[1:])
