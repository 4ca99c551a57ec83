"""Query expansion and database-side augmentation as search stages: better answers without labels,
never outside a filter, the same switches in Python, the CLI and HTTP."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY

from lookalike.evaluation import evaluate_index
from lookalike.expansion import Expansion, diffusion_scores, expanded_queries
from lookalike.index import ImageIndex, NewImage

PER_CLASS_GALLERY, PER_CLASS_QUERIES = 30, 8


def test_alpha_query_expansion_moves_the_query_towards_its_matches():
    query = np.array([[1.0, 0.0, 0.0]], np.float32)
    neighbours = np.array([[[0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]], np.float32)
    expanded = expanded_queries(query, np.array([[0.8, 0.0]], np.float32), neighbours, alpha=1.0)
    assert expanded[0] @ neighbours[0, 0] > query[0] @ neighbours[0, 0]
    assert expanded[0, 2] == 0.0  # a neighbour of similarity 0 adds nothing
    assert np.linalg.norm(expanded[0]) == pytest.approx(1.0)


def test_diffusion_ranks_the_query_group_above_a_lone_near_point():
    rng = np.random.default_rng(0)
    group = np.array([1.0, 0.3, 0.0]) + 0.05 * rng.normal(size=(10, 3))
    lone = np.array([[0.9, -0.6, 0.4]])
    candidates = np.vstack([group, lone]).astype(np.float32)
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    query = np.array([1.0, 0.0, 0.0], np.float32)
    scores = diffusion_scores(query, candidates, neighbours=4, gamma=3.0)
    assert scores[:10].min() > scores[10]


def test_bad_expand_options_are_clear_errors(demo_index: ImageIndex):
    for bad, message in [({"expand": "qe"}, "expand must be one of"), ({"expand_neighbours": 0}, "expand_neighbours"),
                         ({"expand_alpha": -1.0}, "expand_alpha")]:
        with pytest.raises(ValueError, match=message):
            demo_index.search(id=int(demo_index.ids()[0]), **bad)
    assert Expansion.of("none").active is False


@pytest.fixture(scope="module")
def labelled_demo(demo_index: ImageIndex, tmp_path_factory: pytest.TempPathFactory) -> ImageIndex:
    """The demo gallery with its clothing types as labels."""
    index = _copy(demo_index, tmp_path_factory.mktemp("labelled") / "index")
    index.set_labels({record.id: {"label": Path(record.path).parent.name} for record in index.records()})
    yield index
    index.close()


def _copy(source: ImageIndex, folder: Path, **options) -> ImageIndex:
    """A new index holding the source's images and vectors (nothing embedded again)."""
    index = ImageIndex.create(folder, **options)
    ids, vectors = source.vectors()
    records = [source.record(int(i)) for i in ids]
    with index.sync() as run:
        run.store_images([NewImage(r.path, r.content_hash, r.size, r.mtime, r.width, r.height) for r in records],
                         vectors)
        run.finish()
    return index


@pytest.mark.parametrize("expand", ["aqe", "categories", "diffusion", "none"])
def test_filtered_expansion_never_returns_an_image_outside_the_filter(labelled_demo: ImageIndex, expand: str):
    shoes = (DEMO_GALLERY / "shoes").resolve()
    for image_id in labelled_demo.ids()[::10]:
        found = labelled_demo.search(id=int(image_id), k=12, expand=expand, where={"label": "hat"})
        assert found.matches and all(m.labels["label"] == "hat" for m in found.matches)
        under = labelled_demo.search(id=int(image_id), k=12, expand=expand, path_prefix=str(shoes))
        assert under.matches and all(Path(m.path).parent == shoes for m in under.matches)


@pytest.mark.parametrize("index_type", ["hnsw", "ivfpq"])
def test_expansion_and_augmentation_work_with_approximate_index_types(demo_index: ImageIndex, tmp_path: Path,
                                                                      index_type: str):
    with _copy(demo_index, tmp_path / index_type, index_type=index_type) as index:
        assert index.info()["augmentation"].startswith("DBA")
        query = int(index.ids()[5])
        for expand in ("aqe", "diffusion"):
            found = index.search(id=query, k=10, expand=expand)
            assert len(found.matches) == 10 and query not in [m.id for m in found.matches]
            scores = [m.score for m in found.matches]
            assert scores == sorted(scores, reverse=True)


def test_search_and_evaluate_take_the_expand_options_on_the_command_line(labelled_demo: ImageIndex, tmp_path: Path):
    command = [sys.executable, "-m", "lookalike"]
    searched = subprocess.run([*command, "search", "--id", str(int(labelled_demo.ids()[0])), "--index",
                               str(labelled_demo.folder), "--expand", "none", "--json"],
                              capture_output=True, text=True, timeout=300)
    assert searched.returncode == 0, searched.stderr
    plain = labelled_demo.search(id=int(labelled_demo.ids()[0]), expand="none")
    assert [m["id"] for m in json.loads(searched.stdout)["matches"]] == [m.id for m in plain.matches]

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    with open(dataset / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([record.path, Path(record.path).parent.name] for record in labelled_demo.records())
    evaluated = subprocess.run([*command, "evaluate", str(dataset), "--index", str(labelled_demo.folder), "--expand",
                                "none", "--expand", "aqe", "--matches", "2", "--json"],
                               capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    rows = json.loads(evaluated.stdout)
    assert [(row["expand"], row["matches"]) for row in rows] == [("none", 2), ("aqe", 2)]
    assert all(0.0 < row["mAP"] <= 1.0 and row["ms_per_query"] > 0 for row in rows)


# --- quality on real labelled photos: a fixed subset of the clothing set ---------------------------
@pytest.fixture(scope="module")
def clothing_subset(clothing: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 train and 8 test photos of each clothing type, as a labelled folder of its own."""
    with open(clothing / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen: list[dict[str, str]] = []
    for split, count in (("train", PER_CLASS_GALLERY), ("test", PER_CLASS_QUERIES)):
        for label in sorted({row["label"] for row in rows}):
            chosen += [row for row in rows if row["split"] == split and row["label"] == label][:count]
    folder = tmp_path_factory.mktemp("clothing-subset")
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows({"path": str(clothing / row["path"]), "label": row["label"], "split": row["split"]}
                         for row in chosen)
    return folder


@pytest.fixture(scope="module")
def subset_indexes(clothing_subset: Path, tmp_path_factory: pytest.TempPathFactory):
    """The subset indexed plainly (no augmentation) and with the defaults (the same vectors)."""
    with open(clothing_subset / "labels.csv", newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    folder = tmp_path_factory.mktemp("subset-indexes")
    plain = ImageIndex.create(folder / "plain", dba=0)
    plain.add_files(paths)
    default = _copy(plain, folder / "default")
    yield plain, default
    plain.close()
    default.close()


def test_each_stage_improves_map_on_real_labelled_photos(clothing_subset: Path, subset_indexes):
    plain, default = subset_indexes
    baseline = evaluate_index(plain, clothing_subset, expand="none").mean_average_precision
    query_expansion = evaluate_index(plain, clothing_subset, expand="aqe").mean_average_precision
    augmentation = evaluate_index(default, clothing_subset, expand="none").mean_average_precision
    both = evaluate_index(default, clothing_subset).mean_average_precision  # the defaults: DBA + aQE
    assert query_expansion > baseline + 0.005
    assert augmentation > baseline + 0.01
    assert both > max(query_expansion, augmentation)


@pytest.mark.parametrize("matches", [1, 3])
def test_the_defaults_stay_safe_for_queries_with_few_true_matches(clothing_subset: Path, subset_indexes,
                                                                  matches: int):
    plain, default = subset_indexes
    baseline = evaluate_index(plain, clothing_subset, expand="none", matches=matches).mean_average_precision
    defaults = evaluate_index(default, clothing_subset, matches=matches).mean_average_precision
    categories = evaluate_index(default, clothing_subset, expand="categories", matches=matches).mean_average_precision
    assert defaults >= baseline - 0.01
    assert categories < defaults  # why the many-neighbour mode is not the default


def test_the_guard_puts_near_candidates_first_once_and_keeps_scores_falling():
    from lookalike.expansion import guarded_order

    candidates = np.array([7, 3, 9, 4], np.int64)
    plain = np.array([0.80, 0.95, 0.60, 0.90], np.float32)
    floors = np.array([0.85, 0.90, 0.10, 0.95], np.float32)  # 3 (0.95 > 0.90) and 9 (0.60 > 0.10) are near
    ranked, scores = np.array([9, 5, 3, 8], np.int64), np.array([0.99, 0.97, 0.96, 0.50], np.float32)
    ids, guarded = guarded_order(ranked, scores, candidates, plain, floors)
    assert ids.tolist() == [3, 9, 5, 8]  # near ones in plain order, then the re-ranked rest without them
    assert guarded.tolist() == pytest.approx([0.97, 0.97, 0.97, 0.50])
    many = np.arange(200, dtype=np.int64)  # past the all-against-all size: np.isin, the same answer
    big_ids, _ = guarded_order(many[::-1].copy(), np.linspace(1, 0, 200).astype(np.float32), many,
                               np.linspace(0, 1, 200).astype(np.float32), np.full(200, 0.995, np.float32))
    assert big_ids[:2].tolist() == [199, 198] and sorted(big_ids.tolist()) == many.tolist()
