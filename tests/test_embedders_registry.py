"""Choosing a model: names, layers and pooling; an index rebuilds its own embedder and refuses others."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.embedders import available_models, get_embedder, model_info
from lookalike.index import ImageIndex, ModelMismatchError


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        get_embedder("inception-v3")
    for name in ("efficientnet-lite0", "efficientnet-lite2", "resnet50", "vgg16", "color-histogram", "phash",
                 "autoencoder:PATH"):
        assert name in str(error.value) and name in available_models()


def test_model_info_lists_layers_and_defaults():
    assert model_info("resnet50").layers == ["layer3", "layer4"] and model_info("resnet50").default_layer == "layer4"
    assert model_info("vgg16").layers == ["pool5", "fc6", "fc7"]
    assert model_info("efficientnet-lite0").pools == ["avg", "max", "gem"]
    assert model_info("autoencoder:/some/file.pt").layers == ["bottleneck"]


def test_open_rebuilds_the_recorded_layer_and_pooling(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx", layer="stage7", pool="max") as index:
        index.add_folder(photo_folder)
    with ImageIndex.open(tmp_path / "idx") as index:
        assert (index.embedder.layer, index.embedder.pool, index.embedder.dimension) == ("stage7", "max", 320)
        assert index.manifest.embedder["layer"] == "stage7"


def test_open_or_create_refuses_another_layer_or_model(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx", model="phash") as index:
        index.add_folder(photo_folder)
    with pytest.raises(ModelMismatchError, match="model phash, not model color-histogram"):
        ImageIndex.open_or_create(tmp_path / "idx", model="color-histogram")
    with ImageIndex.open_or_create(tmp_path / "idx", model=None) as index:
        assert index.embedder.name == "phash"
    with ImageIndex.create(tmp_path / "lite", pool="gem") as index:
        pass
    with pytest.raises(ModelMismatchError, match="pool gem, not pool avg"):
        ImageIndex.open_or_create(tmp_path / "lite", pool="avg")


def test_query_from_another_layer_is_refused(demo_index):
    other = get_embedder(layer="head", pool="gem")
    with pytest.raises(ModelMismatchError, match="pool: index 'avg' vs query 'gem'"):
        demo_index.search(vector=np.ones(1280, np.float32), model=other.describe())


def test_a_model_family_registered_from_outside_is_listed_described_and_made_by_name():
    from lookalike.embedders import FAMILIES, ModelFamily, ModelInfo, register_family
    from lookalike.embedders.handcrafted import ColorHistogramEmbedder
    from lookalike.errors import RequestError

    with pytest.raises(RequestError, match="unknown model 'my-histogram'"):
        get_embedder("my-histogram")
    family = ModelFamily(lambda: ["my-histogram"], lambda model: model == "my-histogram",
                         lambda model: ModelInfo(model, ["hsv"], "hsv", [], "none (a plug-in)"),
                         lambda model, *options: ColorHistogramEmbedder())
    register_family(family)
    try:
        assert "my-histogram" in available_models() and model_info("my-histogram").weights == "none (a plug-in)"
        assert isinstance(get_embedder("my-histogram"), ColorHistogramEmbedder)
    finally:
        FAMILIES.remove(family)
    assert "my-histogram" not in available_models()
