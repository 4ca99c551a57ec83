"""Colour histogram and perceptual hash: colour-driven and near-duplicate similarity without a network."""

from __future__ import annotations

import numpy as np
from conftest import DEMO_GALLERY
from PIL import Image, ImageEnhance

from lookalike.embedders import get_embedder
from lookalike.embedders.handcrafted import hsv_histogram, perceptual_hash
from lookalike.images import DecodedImage, load_image


def _decoded(image: Image.Image) -> DecodedImage:
    return DecodedImage(image.convert("RGB"), image.width, image.height)


def _embed(embedder, images):
    return embedder.embed_batch(np.stack([embedder.preprocess(_decoded(i)) for i in images]))


def test_pure_colours_fall_in_one_bin_each():
    red = hsv_histogram(Image.new("RGB", (32, 32), (255, 0, 0)))
    blue = hsv_histogram(Image.new("RGB", (32, 32), "blue"))
    assert red.max() == 1.0 and blue.max() == 1.0 and red.argmax() != blue.argmax()


def test_colour_histogram_ranks_similar_colours_closer():
    embedder = get_embedder("color-histogram")
    noise = np.random.default_rng(0).integers(0, 30, (64, 64, 3))
    reds = [Image.fromarray(np.clip(noise + [200, 20, 20], 0, 255).astype(np.uint8)),
            Image.fromarray(np.clip(noise[::-1] + [210, 25, 15], 0, 255).astype(np.uint8))]
    green = Image.fromarray(np.clip(noise + [20, 200, 20], 0, 255).astype(np.uint8))
    vectors = _embed(embedder, [*reds, green])
    assert vectors.shape == (3, 256)
    assert vectors[0] @ vectors[1] > 0.8 > vectors[0] @ vectors[2]


def test_phash_survives_resizing_and_brightness_but_not_another_photo():
    embedder = get_embedder("phash")
    photos = sorted(DEMO_GALLERY.glob("dress/*.jpg"))[:1] + sorted(DEMO_GALLERY.glob("shoes/*.jpg"))[:1]
    original = load_image(photos[0]).pixels
    edited = ImageEnhance.Brightness(original.resize((original.width // 2, original.height // 2))).enhance(1.2)
    other = load_image(photos[1]).pixels
    vectors = _embed(embedder, [original, edited, other])
    assert vectors.shape == (3, 64)
    np.testing.assert_allclose(np.abs(vectors) * 8, 1.0, atol=1e-6)  # +-1/8: cosine = 1 - 2 * hamming / 64
    bits = [perceptual_hash(image) for image in (original, edited, other)]
    assert int((bits[0] != bits[1]).sum()) <= 6 < int((bits[0] != bits[2]).sum())
    assert vectors[0] @ vectors[1] == 1 - 2 * int((bits[0] != bits[1]).sum()) / 64


def test_handcrafted_models_have_one_layer():
    import pytest

    with pytest.raises(ValueError, match="one layer"):
        get_embedder("phash", layer="head")
    assert get_embedder("color-histogram").describe()["model"] == "color-histogram"
