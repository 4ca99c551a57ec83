"""EfficientNet-Lite: the default tap stays exactly as indexes recorded it; stage taps and pooling."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.embedders import get_embedder
from lookalike.embedders.efficientnet import VARIANTS, lite_layers
from lookalike.images import load_image

DEFAULT_DESCRIPTION = {
    "model": "efficientnet-lite0",
    "dimension": 1280,
    "layer": "head",
    "pool": "avg",
    "preprocessing": "exif-upright, rgb (alpha on white), shorter side 224 bilinear, centre crop 224, (x-127)/128",
}


def _batch(embedder, photos):
    return np.stack([embedder.preprocess(load_image(p, target_side=embedder.input_side)) for p in photos])


@pytest.fixture(scope="module")
def photos(demo_copy_module):
    return demo_copy_module


@pytest.fixture(scope="module")
def demo_copy_module():
    from conftest import DEMO_GALLERY

    return [sorted((DEMO_GALLERY / label).glob("*.jpg"))[0] for label in ("dress", "shoes", "hat")]


def test_default_description_is_unchanged_so_existing_indexes_open(embedder):
    description = embedder.describe()
    assert {k: description[k] for k in DEFAULT_DESCRIPTION} == DEFAULT_DESCRIPTION
    assert description["version"].startswith("weights-") and description["version"].endswith("/export-1")
    assert get_embedder(layer="head", pool="avg").describe() == description


def test_default_still_classifies_imagenet(embedder, photos):
    logits = embedder.classify_batch(_batch(embedder, photos))
    assert logits.shape == (3, 1000)
    assert np.isfinite(logits).all() and logits.std() > 0.5


def test_stage_table_matches_the_network():
    from efficientnet_lite_pytorch import EfficientNet

    for name, variant in VARIANTS.items():
        blocks = EfficientNet.from_name(variant.torch_name)._blocks
        for tap, (last, channels) in variant.stage_ends.items():
            assert blocks[last]._block_args.output_filters == channels, (name, tap)
            if last + 1 < len(blocks):
                assert blocks[last + 1]._block_args.output_filters != channels, f"{name} {tap} is not a stage end"


@pytest.mark.parametrize(("layer", "pool", "dimension"), [("stage6", "gem", 192), ("head", "max", 1280)])
def test_taps_give_their_dimension_and_differ_from_the_default(embedder, photos, layer, pool, dimension):
    tapped = get_embedder("efficientnet-lite0", layer=layer, pool=pool)
    vectors = tapped.embed_batch(_batch(tapped, photos))
    assert vectors.shape == (3, dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert tapped.describe()["layer"] == layer and tapped.describe()["pool"] == pool
    if dimension == 1280:
        default = embedder.embed_batch(_batch(embedder, photos))
        assert not np.allclose(vectors, default, atol=1e-3)


def test_lite2_uses_its_own_input_size():
    lite2 = get_embedder("efficientnet-lite2")
    assert lite2.input_side == 260 and lite2.dimension == 1280
    assert "260" in lite2.describe()["preprocessing"]


def test_unknown_layer_or_pool_lists_the_valid_ones():
    with pytest.raises(ValueError, match="stage5, stage6, stage7, head"):
        get_embedder("efficientnet-lite0", layer="layer4")
    with pytest.raises(ValueError, match="avg, max, gem"):
        get_embedder("efficientnet-lite0", pool="median")
    assert lite_layers("efficientnet-lite2")[-1] == "head"
