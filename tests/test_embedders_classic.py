"""VGG16 and ResNet50 in plain torch: torchvision's architecture and keys, layer taps, weight loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.embedders import get_embedder
from lookalike.embedders.classic import build_network, make_tap
from lookalike.embedders.torch_weights import find_weights, hub_checkpoints
from lookalike.images import load_image

# Facts of torchvision's models: number of state_dict tensors and of parameters.
TORCHVISION = {"resnet50": (320, 25_557_032), "vgg16": (32, 138_357_544)}


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    return {model: build_network(model).eval() for model in TORCHVISION}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory, networks):
    """ResNet50's randomly initialised weights in a file (VGG16's would be 528 MB: not written)."""
    path = tmp_path_factory.mktemp("weights") / "resnet50-random.pth"
    torch.save(networks["resnet50"].state_dict(), path)
    return {"resnet50": path}


@pytest.mark.parametrize("model", sorted(TORCHVISION))
def test_architecture_matches_torchvision(networks, model):
    network = networks[model]
    tensors, parameters = TORCHVISION[model]
    assert len(network.state_dict()) == tensors
    assert sum(p.numel() for p in network.parameters()) == parameters
    with torch.no_grad():
        assert network(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_torchvision_key_names(networks):
    resnet = networks["resnet50"].state_dict()
    assert resnet["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert resnet["layer4.2.bn3.running_var"].shape == (2048,)
    assert resnet["fc.weight"].shape == (1000, 2048)
    vgg = networks["vgg16"].state_dict()
    assert vgg["features.28.weight"].shape == (512, 512, 3, 3)
    assert vgg["classifier.0.weight"].shape == (4096, 25088)
    assert vgg["classifier.6.weight"].shape == (1000, 4096)


@pytest.mark.parametrize(("model", "layer", "pool", "dimension"), [
    ("resnet50", "layer3", "avg", 1024), ("resnet50", "layer4", "gem", 2048),
    ("vgg16", "pool5", "max", 512), ("vgg16", "fc6", "none", 4096), ("vgg16", "fc7", "none", 4096),
])
def test_layer_taps_have_their_shapes(networks, model, layer, pool, dimension):
    tap = make_tap(networks[model], model, layer, pool)
    with torch.no_grad():
        assert tap(torch.rand(2, 3, 64, 64)).shape == (2, dimension)


def test_resnet_pool5_is_the_average_of_layer4_the_classifier_input(networks):
    network = networks["resnet50"]
    pixels = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        pooled = make_tap(network, "resnet50", "layer4", "avg")(pixels)
        np.testing.assert_allclose(network.fc(pooled).numpy(), network(pixels).numpy(), atol=1e-4)


def test_weights_file_loads_and_embeds_through_onnx(random_weights):
    embedder = get_embedder("resnet50", layer="layer3", pool="gem", weights=random_weights["resnet50"])
    photo = sorted(__import__("conftest").DEMO_GALLERY.glob("dress/*.jpg"))[0]
    tensor = embedder.preprocess(load_image(photo, target_side=224))
    assert tensor.shape == (3, 224, 224) and abs(float(tensor.mean())) < 3
    vectors = embedder.embed_batch(tensor[None])
    assert vectors.shape == (1, 1024)
    tap = embedder.build_torch_model()
    with torch.no_grad():
        expected = tap(torch.from_numpy(tensor[None])).numpy()
    np.testing.assert_allclose(vectors[0], expected[0] / np.linalg.norm(expected[0]), atol=1e-4)
    assert embedder.describe()["weights_file"] == str(random_weights["resnet50"])


def test_wrong_architecture_weights_name_the_mismatching_tensors(random_weights, networks):
    embedder = get_embedder("vgg16", weights=random_weights["resnet50"])
    with pytest.raises(ValueError, match=r"does not fit vgg16: .*missing features\.0\.weight"):
        embedder.build_torch_model()
    state = dict(networks["resnet50"].state_dict())
    state["fc.weight"] = torch.zeros(10, 2048)
    odd = random_weights["resnet50"].with_name("resnet50-10-classes.pth")
    torch.save(state, odd)
    with pytest.raises(ValueError, match=r"fc\.weight has shape \(10, 2048\), \(1000, 2048\) expected"):
        get_embedder("resnet50", weights=odd).build_torch_model()


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as error:
        get_embedder("resnet50")
    message = str(error.value)
    assert "resnet50-0676ba61.pth" in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--weights" in message
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        get_embedder("vgg16", weights=tmp_path / "nowhere.pth")


def test_weights_are_found_in_torchs_hub_cache(tmp_path, monkeypatch, random_weights):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_checkpoints().mkdir(parents=True)
    target = hub_checkpoints() / "resnet50-11ad3fa6.pth"
    target.write_bytes(random_weights["resnet50"].read_bytes())
    assert find_weights("resnet50", ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")) == target
    assert get_embedder("resnet50", layer="layer3").describe()["dimension"] == 1024


def test_fc_layers_take_no_pooling(random_weights):
    with pytest.raises(ValueError, match="already a vector"):
        get_embedder("vgg16", layer="fc7", pool="gem", weights=random_weights["resnet50"])
    with pytest.raises(ValueError, match="layer3, layer4"):
        get_embedder("resnet50", layer="pool5", weights=random_weights["resnet50"])
