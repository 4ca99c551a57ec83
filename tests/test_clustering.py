"""k-means clustering of an index, contact sheets, purity/NMI, label propagation and the by_cluster scope."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.organise.clustering import (
    Clustering,
    NoClearGroupsError,
    cluster_index,
    cluster_quality,
    kmeans,
    nearest_clusters,
    propagate_labels,
    representatives,
)
from lookalike.organise.labels import import_labels

LABELS = DEMO_GALLERY / "labels.csv"


def _few_labels(index, path, per_cluster=1, clusters=None):
    """A CSV labelling the images nearest each centroid with their true label (as a person would)."""
    clustering = Clustering.load(index.folder)
    truth = index.label_values("label")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for cluster in clusters if clusters is not None else range(clustering.k):
            for image_id in representatives(clustering, cluster, per_cluster):
                writer.writerow([index.record(image_id).path, truth[image_id]])
    return path


def test_k_larger_than_the_collection_is_a_clear_error(demo_clone, capsys):
    with pytest.raises(ValueError, match=r"k=200 is larger than the collection \(144 images\)"):
        cluster_index(demo_clone, k=200)
    folder = str(demo_clone.folder)
    demo_clone.close()
    assert main(["cluster", "--index", folder, "--k", "500"]) == 2
    assert "larger than the collection" in capsys.readouterr().err


def test_clusters_of_demo_clothing_are_mostly_pure_with_sheets(demo_clone, tmp_path):
    import_labels(demo_clone, LABELS)
    report = cluster_index(demo_clone, k=10, out=tmp_path / "out")
    assert sum(report.sizes) == 144 and len(report.sizes) == 10
    assert report.purity > 0.45 and report.nmi > 0.4 and report.labelled == 144  # chance: about 0.2 and 0.1
    sheets = sorted((tmp_path / "out").glob("cluster-*.png"))
    assert len(sheets) == 10 and sheets[0].read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "out" / "clusters.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 144 and {int(r["cluster"]) for r in rows} == set(range(10))
    assert demo_clone.search(1, k=3, where={"cluster": rows[0]["cluster"]}).matches  # stored as a label
    assert demo_clone.files.clustering.exists()


def test_report_goes_into_the_index_folder_by_default(demo_clone):
    report = cluster_index(demo_clone, k=3, sheets=False)
    assert report.files[0] == str(demo_clone.files.clusters_report)
    assert (demo_clone.files.clusters_report / "clusters.csv").exists()


def test_automatic_k_is_the_largest_eigengap_of_clear_groups(demo_clone):
    """Three kinds of the demo's clothing that look nothing alike (shoes, hats, trousers), 10 photos each: k=3."""
    import_labels(demo_clone, LABELS)
    keep = {i for i, label in demo_clone.label_values("label").items() if label in ("shoes", "hat", "pants")}
    demo_clone.remove_files([r.path for r in demo_clone.records() if r.id not in keep])
    report = cluster_index(demo_clone, k=None, k_range=(2, 8), sheets=False)
    assert report.k == 3 and set(report.eigengaps) == set(range(2, 9))
    assert report.k == max(report.eigengaps, key=report.eigengaps.get) and "eigengap" in report.criterion
    assert report.purity > 0.9


def test_automatic_k_refuses_photos_without_clear_groups(demo_clone):
    with pytest.raises(NoClearGroupsError, match=r"form no clear groups.*give the number of clusters: lookalike "
                                                 r"cluster --index .* --k N") as refused:
        cluster_index(demo_clone, k=None, sheets=False)
    assert refused.value.count.k is None and refused.value.count.strength < 1
    assert not demo_clone.files.clustering.exists()


def test_purity_and_nmi_of_a_perfect_and_a_useless_clustering():
    labels = ["a"] * 5 + ["b"] * 5
    assert cluster_quality([0] * 5 + [1] * 5, labels) == pytest.approx((1.0, 1.0))
    purity, nmi = cluster_quality([0] * 10, labels)
    assert purity == 0.5 and nmi == pytest.approx(0.0)


def test_kmeans_finds_well_separated_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(8, 32, dtype=np.float32)
    points = np.repeat(centres, 50, axis=0) + rng.normal(0, 0.05, (400, 32)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    clustering = kmeans(points, 8)
    purity, _ = cluster_quality(clustering.assignments, np.repeat(np.arange(8), 50).astype(str).tolist())
    assert purity == 1.0 and clustering.similarity.min() > 0.8


def test_one_label_per_cluster_spreads_to_every_image(demo_clone, tmp_path):
    import_labels(demo_clone, LABELS)
    cluster_index(demo_clone, k=10, sheets=False)
    few = _few_labels(demo_clone, tmp_path / "few.csv")
    report = propagate_labels(demo_clone, few, out=tmp_path / "spread.csv")
    assert report.labelled_images == 10 and report.propagated == 144 and report.clusters_without_labels == []
    assert report.evaluated == 134 and report.accuracy > 0.4  # 10 clothing types: chance is about 0.1
    with open(tmp_path / "spread.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 144 and all(r["label"] for r in rows)
    assert sum(r["source"] == "human" and r["confidence"] == "1.000" for r in rows) == 10


def test_cluster_without_labelled_member_is_warned_and_borrows_or_stays_empty(demo_clone, tmp_path):
    import_labels(demo_clone, LABELS)
    cluster_index(demo_clone, k=10, sheets=False)
    few = _few_labels(demo_clone, tmp_path / "few.csv", clusters=range(8))
    with open(few, "a") as handle:
        handle.write("nowhere/photo.jpg,hat\n")
    borrowed = propagate_labels(demo_clone, few, out=tmp_path / "nearest.csv")
    assert borrowed.clusters_without_labels == [8, 9] and len(borrowed.skipped.unknown) == 1
    assert any("clusters 8, 9 have no labelled member" in w and "nearest" in w for w in borrowed.warnings)
    with open(tmp_path / "nearest.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["cluster"] in ("8", "9")]
    assert rows and all(r["source"].startswith("nearest cluster") and float(r["confidence"]) <= 0.5 for r in rows)
    left = propagate_labels(demo_clone, few, out=tmp_path / "left.csv", unlabelled="leave")
    assert left.propagated == 144 - len(rows) and any("left unlabelled" in w for w in left.warnings)


def test_cli_cluster_label_needs_a_clustering_first(demo_clone, tmp_path, capsys):
    few = tmp_path / "few.csv"
    few.write_text("path,label\n")
    folder = str(demo_clone.folder)
    demo_clone.close()
    assert main(["cluster", "label", "--index", folder, "--few-csv", str(few)]) == 2
    assert "run `lookalike cluster" in capsys.readouterr().err
    assert main(["cluster", "--index", folder, "--k", "4", "--out", str(tmp_path / "c")]) == 0
    assert "k=4 (given)" in capsys.readouterr().out


def test_by_cluster_searches_only_the_nearest_clusters(demo_clone):
    cluster_index(demo_clone, k=6, sheets=False)
    clustering = Clustering.load(demo_clone.folder)
    query = int(clustering.ids[0])
    own = int(clustering.assignments[0])
    vector = demo_clone.vectors([query])[0]
    assert nearest_clusters(clustering.centroids, vector, 1) == [own]
    result = demo_clone.search(query, k=200, by_cluster=1)
    assert len(result.matches) == clustering.sizes()[own] - 1  # every other member, and nothing else
    assert {m.labels["cluster"] for m in result.matches} == {str(own)} and result.predicted_class is None
    nearest_two = nearest_clusters(clustering.centroids, vector, 2)
    wider = demo_clone.search(query, k=200, by_cluster=2)
    assert {m.labels["cluster"] for m in wider.matches} == {str(c) for c in nearest_two}
    assert len(wider.matches) == sum(clustering.sizes()[c] for c in nearest_two) - 1


def test_cli_search_by_cluster_prints_k_matches(demo_clone, capsys):
    cluster_index(demo_clone, k=6, sheets=False)
    folder = str(demo_clone.folder)
    demo_clone.close()
    assert main(["search", "--id", "3", "--by-cluster", "-k", "3", "--index", folder]) == 0
    assert capsys.readouterr().out.count("\n") == 5  # query line, header, 3 matches


def test_by_cluster_without_a_clustering_is_a_clear_error(demo_clone):
    assert demo_clone.searcher.scopes()["by_cluster"] is False
    with pytest.raises(ValueError, match="by_cluster needs a clustering of this index: lookalike cluster"):
        demo_clone.search(1, by_cluster=1)
    cluster_index(demo_clone, k=3, sheets=False)
    assert demo_clone.searcher.scopes()["by_cluster"] is True
