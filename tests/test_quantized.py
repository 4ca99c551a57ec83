"""int8 EfficientNet-Lite and the uint8 input folded into the graph: same vectors (or close), recorded, reopened."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY, REPO
from fastapi.testclient import TestClient

from lookalike.embedders import get_embedder
from lookalike.embedders.efficientnet import EfficientNetLiteEmbedder
from lookalike.embedders.quantized import CALIBRATION_PHOTOS, calibration_photos
from lookalike.embedders.spec import EmbedderSpec, ModelMismatchError, check_same_vectors
from lookalike.images import load_image
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder
from lookalike.settings import cache_dir
from lookalike.web import ServerSettings, create_app


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    """Two real photos of each clothing type in the demo gallery (none of them calibrated on as such: the
    calibration set holds 260-pixel crops of them)."""
    return [photo for label in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir())
            for photo in sorted(label.glob("*.jpg"))[-2:]]


@pytest.fixture(scope="module")
def int8() -> EfficientNetLiteEmbedder:
    return get_embedder(precision="int8")  # type: ignore[return-value]


def vectors(embedder, photos: list[Path]) -> np.ndarray:
    return embedder.embed_batch(np.stack([embedder.preprocess(load_image(p, embedder.input_side)) for p in photos]))


def manifest_embedder(folder: Path) -> dict:
    return json.loads(IndexFolder(folder).manifest.read_text())["embedder"]


def test_int8_vectors_point_where_the_float_vectors_do(embedder, int8, photos):
    cosines = np.sum(vectors(embedder, photos) * vectors(int8, photos), axis=1)
    assert cosines.min() >= 0.95, cosines
    assert cosines.mean() >= 0.98, cosines


def test_int8_vectors_find_the_same_nearest_photo_as_float(embedder, int8, photos):
    float_vectors, int8_vectors = vectors(embedder, photos), vectors(int8, photos)
    float_similarity, int8_similarity = float_vectors @ float_vectors.T, int8_vectors @ int8_vectors.T
    np.fill_diagonal(float_similarity, -1)
    np.fill_diagonal(int8_similarity, -1)
    agree = float_similarity.argmax(axis=1) == int8_similarity.argmax(axis=1)
    assert agree.mean() >= 0.8, agree


def test_the_uint8_input_gives_the_float_networks_vectors(embedder, photos):
    folded = EfficientNetLiteEmbedder(uint8_input=True)
    crop = folded.preprocess(load_image(photos[0]))
    assert crop.dtype == np.uint8 and crop.shape == (224, 224, 3)
    np.testing.assert_allclose(vectors(folded, photos), vectors(embedder, photos), atol=1e-5)


def test_the_int8_network_gives_the_same_vectors_with_either_input(int8, photos):
    float_input = EfficientNetLiteEmbedder(precision="int8", uint8_input=False)
    assert int8.uint8_input and not float_input.uint8_input
    np.testing.assert_allclose(vectors(int8, photos), vectors(float_input, photos), atol=1e-5)


def test_the_int8_network_takes_the_pixels_without_scaling_them(int8):
    """Calibration found the inverse of (x - 127) / 128 for the first quantization, so no float copy is made."""
    import onnx

    graph = onnx.load(str(int8.onnx_path())).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    readers = [node.op_type for node in graph.node if "pixels" in node.input]
    assert readers == ["Transpose"]
    assert not any(node.op_type in ("Cast", "Div") for node in graph.node)


def test_a_fresh_cache_quantizes_the_same_int8_model(int8, photos, tmp_path, monkeypatch):
    export = EfficientNetLiteEmbedder().onnx_path()
    (tmp_path / "onnx").mkdir()
    shutil.copy(export, tmp_path / "onnx" / export.name)
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    again = get_embedder(precision="int8")
    assert again.onnx_path().parent == tmp_path / "onnx"
    assert again.describe() == int8.describe()
    np.testing.assert_array_equal(vectors(again, photos), vectors(int8, photos))


def test_the_int8_model_is_cached_under_its_calibration_and_settings(int8):
    path = int8.onnx_path()
    assert path.parent == cache_dir() / "onnx"
    assert "-int8-q1-cal" in path.name and path.name.endswith("-uint8.onnx")
    version = int8.describe()["version"]
    assert version.startswith(EfficientNetLiteEmbedder().describe()["version"] + "/int8-q1-cal")


def test_an_int8_index_records_its_precision_and_reopens_with_the_same_embedder(tmp_path, photos):
    folder = tmp_path / "int8"
    with ImageIndex.create(folder, precision="int8", dba=0) as index:
        index.add_files(photos)
    recorded = manifest_embedder(folder)
    assert recorded["precision"] == "int8" and "/int8-" in recorded["version"]
    with ImageIndex.open(folder) as reopened:
        assert reopened.embedder.precision == "int8"  # type: ignore[attr-defined]
        assert reopened.embedder.describe() == recorded
        for photo in photos[:3]:
            found = reopened.search(photo.read_bytes(), k=3, expand="none").matches[0]
            assert Path(found.path).name == photo.name and found.score > 0.999


def test_a_float_index_records_no_precision_and_opens_as_before(tmp_path, embedder, photos):
    folder = tmp_path / "float"
    with ImageIndex.create(folder, precision="float32") as index:
        index.add_files(photos[:4])
        _, stored = index.vectors()
    recorded = manifest_embedder(folder)
    assert "precision" not in recorded and recorded["version"].endswith("/export-1")
    assert EmbedderSpec.of_index(recorded).precision is None
    with ImageIndex.open(folder) as reopened:
        assert reopened.embedder.precision == "float32"  # type: ignore[attr-defined]
        assert not reopened.embedder.uint8_input  # type: ignore[attr-defined]
        np.testing.assert_allclose(reopened.vectors()[1], stored, atol=1e-6)
    with ImageIndex.open_or_create(folder, precision="float32") as same:
        assert len(same) == 4


def test_asking_an_int8_index_for_float_is_refused(tmp_path):
    folder = tmp_path / "int8"
    ImageIndex.create(folder, precision="int8").close()
    with pytest.raises(ModelMismatchError, match="precision"):
        ImageIndex.open_or_create(folder, precision="float32")


def test_float_vectors_are_refused_by_an_int8_index(embedder, int8):
    with pytest.raises(ModelMismatchError, match="precision"):
        check_same_vectors(int8.describe(), embedder.describe())


def test_an_unknown_precision_or_a_model_without_int8_is_refused():
    with pytest.raises(ValueError, match="float32, int8"):
        get_embedder(precision="int4")
    with pytest.raises(ValueError, match="EfficientNet-Lite"):
        get_embedder("phash", precision="int8")


def test_the_cli_makes_an_int8_index(tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos[:4]:
        shutil.copy(photo, folder / photo.name)
    done = subprocess.run([sys.executable, "-m", "lookalike", "index", str(folder), "--index", str(tmp_path / "idx"),
                           "--precision", "int8", "--json"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert manifest_embedder(tmp_path / "idx")["precision"] == "int8"


def test_http_creates_an_int8_index(tmp_path):
    existing = tmp_path / "existing"
    ImageIndex.create(existing).close()
    with TestClient(create_app([existing], ServerSettings(index_root=tmp_path / "made"))) as client:
        assert client.post("/api/indexes", json={"name": "small", "precision": "int8"}).status_code == 201
        assert client.post("/api/indexes", json={"name": "odd", "precision": "int4"}).status_code == 422
    assert manifest_embedder(tmp_path / "made" / "small")["precision"] == "int8"


def test_the_calibration_photos_ship_with_the_package():
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["lookalike"]
    shipped = [p.relative_to(REPO / "lookalike").as_posix() for p in calibration_photos()]
    assert len(shipped) >= 100
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns) for name in shipped)
    assert (CALIBRATION_PHOTOS / "LICENSE").exists()


@pytest.mark.parametrize(("flags", "device", "expected"), [
    ("fpu sse2 avx2 avx512f avx512_vnni", "cpu", "int8"),
    ("fpu sse2 avx2 avx_vnni", "cpu", "int8"),
    ("fp asimd asimddp", "cpu", "int8"),
    ("fpu sse2 avx2 fma", "cpu", "float32"),
    ("fpu sse2 avx2 avx512_vnni", "cuda", "float32"),
])
def test_new_indexes_default_to_int8_only_where_the_cpu_has_integer_dot_products(tmp_path, flags, device, expected):
    from lookalike.embedders.quantized import default_precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert default_precision(device, cpuinfo) == expected
    assert default_precision(device, tmp_path / "missing") == "float32"


def test_an_index_made_without_a_precision_records_the_machines_default(tmp_path, monkeypatch):
    from lookalike.embedders import quantized

    monkeypatch.setattr(quantized, "default_precision", lambda device="cpu": "int8")
    with ImageIndex.create(tmp_path / "default") as index:
        assert index.manifest.embedder.get("precision") == "int8"
    monkeypatch.setattr(quantized, "default_precision", lambda device="cpu": "float32")
    with ImageIndex.create(tmp_path / "float") as index:
        assert "precision" not in index.manifest.embedder
    with ImageIndex.create(tmp_path / "asked", model="color-histogram") as index:  # not an EfficientNet-Lite
        assert "precision" not in index.manifest.embedder
