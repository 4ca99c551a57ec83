"""Convolutional autoencoder: trains on a few photos, saves, plots, and indexes as autoencoder:PATH."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.cli import main
from lookalike.embedders import get_embedder
from lookalike.embedders.autoencoder import train_autoencoder
from lookalike.files import walk_images
from lookalike.index import ImageIndex


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import DEMO_GALLERY

    photos = [sorted((DEMO_GALLERY / label).glob("*.jpg"))[0] for label in ("dress", "hat", "pants", "shoes")]
    out = tmp_path_factory.mktemp("cae") / "cae.pt"
    steps = []
    report = train_autoencoder(photos, out, epochs=2, batch_size=2, progress=lambda done, total: steps.append(total))
    return report, steps


def test_training_saves_a_model_and_reports_losses(trained):
    report, steps = trained
    assert report.model_file.is_file() and report.images == 4 and len(report.losses) == 2
    assert all(np.isfinite(report.losses)) and 0 < report.losses[-1] < 0.2
    assert steps and steps[-1] == 8  # 4 photos x 2 epochs, reported to the progress callback
    assert report.reconstructions.shape == report.originals.shape == (4, 128, 128, 3)


def test_autoencoder_indexes_and_reopens_from_the_manifest(trained, demo_copy, tmp_path):
    report, _ = trained
    model = f"autoencoder:{report.model_file}"
    with ImageIndex.create(tmp_path / "idx", model=model) as index:
        assert index.add_folder(demo_copy).added == len(list(walk_images(demo_copy)))
        assert index.embedder.dimension == 1024
    with ImageIndex.open(tmp_path / "idx") as index:
        assert index.manifest.embedder["model"] == f"autoencoder:{report.model_file.resolve()}"
        first = sorted(walk_images(demo_copy))[0]
        query = tmp_path / "query.jpg"
        query.write_bytes(first.read_bytes())  # not in the index: embedded as a query
        match = index.search(query, k=1).matches[0]
        assert match.path == str(first) and match.score == pytest.approx(1.0, abs=0.05)


def test_not_an_autoencoder_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-autoencoder"):
        get_embedder(f"autoencoder:{tmp_path / 'missing.pt'}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torch")
    embedder = get_embedder(f"autoencoder:{junk}")
    with pytest.raises(ValueError, match="not a readable autoencoder"):
        embedder.embed_batch(np.zeros((1, 3, 128, 128), np.float32))


def test_cli_trains_one_epoch_and_writes_the_pictures(photo_folder, tmp_path, capsys):
    out = tmp_path / "mine.pt"
    assert main(["train-autoencoder", str(photo_folder), "--out", str(out), "--epochs", "1"]) == 0
    for picture in ("mine-loss.png", "mine-reconstructions.png"):
        with Image.open(tmp_path / picture) as image:
            assert image.width > 300
    assert "trained on 8 photos" in capsys.readouterr().out
    assert main(["train-autoencoder", str(tmp_path / "nothing"), "--out", str(out)]) == 2
