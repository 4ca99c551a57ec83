"""2-D maps: t-SNE layout, PNG scatter, offline HTML page with hover thumbnails."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.organise.labels import import_labels
from lookalike.organise.mapping import embed_2d, map_index


def test_map_of_demo_gallery_writes_png_and_offline_html_into_the_index_folder(demo_clone):
    import_labels(demo_clone, DEMO_GALLERY / "labels.csv")
    report = map_index(demo_clone, colour_by="label", thumbnails=False)
    assert report.count == 144 and report.colour_by == "label"
    assert (demo_clone.files.map / "map.png").read_bytes()[:4] == b"\x89PNG"
    page = (demo_clone.files.map / "map.html").read_text()
    points = json.loads(re.search(r"const points = (\[.*?\]);\n", page).group(1))
    assert len(points) == 144 and all(p["img"].startswith("data:image/jpeg;base64,") for p in points)
    assert {p["group"] for p in points} == {"dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes",
                                            "shorts", "skirt", "t-shirt"}
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from outside: works offline


def test_tsne_keeps_neighbours_of_the_same_type_close(demo_clone):
    import_labels(demo_clone, DEMO_GALLERY / "labels.csv")
    ids, vectors = demo_clone.vectors()
    points = embed_2d(vectors)
    truth = demo_clone.label_values("label")
    labels = np.array([truth[i] for i in ids.tolist()])
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    same_as_nearest = (labels[distances.argmin(axis=1)] == labels).mean()
    assert same_as_nearest > 0.5  # chance is 0.1


def test_map_of_too_few_images_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="at least 3 images"):
        embed_2d(np.eye(2, 8, dtype=np.float32))
    assert main(["map", "--index", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")]) == 2
    assert "lookalike: error:" in capsys.readouterr().err


def test_cli_map_coloured_by_cluster_with_thumbnails(demo_clone, tmp_path, capsys):
    from lookalike.organise.clustering import cluster_index

    cluster_index(demo_clone, k=5, sheets=False)
    folder = str(demo_clone.folder)
    demo_clone.close()
    assert main(["map", "--index", folder, "--out", str(tmp_path / "m"), "--colour-by", "cluster"]) == 0
    assert "(colour: cluster)" in capsys.readouterr().out
    assert (tmp_path / "m" / "map-thumbnails.png").stat().st_size > 10_000


def test_cli_map_goes_into_the_index_folder_where_the_server_shows_it(demo_clone):
    folder = demo_clone.folder
    demo_clone.close()
    assert main(["map", "--index", str(folder), "--no-thumbnails", "--colour-by", ""]) == 0
    assert (folder / "map" / "map.html").exists() and (folder / "map" / "map.png").exists()
