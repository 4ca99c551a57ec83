"""Tuning search parameters to a target recall, measured on the index's own vectors."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.backends import new_backend
from lookalike.backends.exact import exact_top_k
from lookalike.cli import main
from lookalike.index import ImageIndex, tune
from lookalike.index.manifest import read_manifest
from lookalike.index.tune import recall_at_k, tune_backend


@pytest.fixture(scope="module")
def collection(demo_index):
    """2,000 noisy copies of the demo photos' real embeddings, and 50 held-out queries."""
    _, real = demo_index.vectors()
    rng = np.random.default_rng(5)

    def copies(count):
        vectors = real[rng.integers(0, len(real), count)] + rng.standard_normal((count, real.shape[1])) * 0.02
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    vectors, queries = copies(2000), copies(50)
    ids = np.arange(2000, dtype=np.int64)
    _, truth = exact_top_k(queries, [(ids, vectors)], 10)
    return ids, vectors, queries, truth


def test_hnsw_gets_the_cheapest_ef_search_reaching_the_target(collection):
    ids, vectors, queries, truth = collection
    backend = new_backend("hnsw", vectors.shape[1], {"M": 8, "ef_construction": 40})
    backend.add(ids, vectors)
    report = tune_backend(backend, queries, truth, target_recall=0.97)
    assert report.recall >= 0.97 and backend.ef_search == report.params["ef_search"]
    assert report.trials[-1].reaches >= 0.97  # beyond the standard error of 50 queries' recall
    assert all(trial.reaches < 0.97 for trial in report.trials[:-1])  # nothing cheaper would do
    assert recall_at_k(backend.search(queries, 10)[1], truth, None, 10) >= 0.97


def test_unreachable_target_recall_is_a_clear_error(collection, monkeypatch):
    ids, vectors, queries, truth = collection
    monkeypatch.setattr(tune, "RERANK", (1,))  # no re-ranking depth to buy recall with
    params = {"nlist": 16, "pq_bytes": 2, "reduced_dimension": 16, "min_train": 1000}  # 2-byte codes
    backend = new_backend("ivfpq", vectors.shape[1], params)
    backend.add(ids, vectors)
    with pytest.raises(ValueError, match="cannot be reached"):
        tune_backend(backend, queries, truth, target_recall=1.0)


def test_target_recall_outside_zero_to_one_is_refused(collection):
    ids, vectors, queries, truth = collection
    backend = new_backend("flat-ip", vectors.shape[1])
    with pytest.raises(ValueError, match="target recall must be in"):
        tune_backend(backend, queries, truth, target_recall=1.5)


def test_tuned_setting_is_saved_in_the_manifest_and_used_on_reopen(tmp_path, demo_copy):
    with ImageIndex.create(tmp_path / "idx", index_type="hnsw") as index:
        index.add_folder(demo_copy)
        report = index.tune(target_recall=0.9, sample=20)
    manifest = read_manifest(tmp_path / "idx")
    assert manifest.index_params["ef_search"] == report.params["ef_search"]
    assert manifest.tuned["recall"] >= 0.9
    with ImageIndex.open(tmp_path / "idx") as index:
        assert index._store.backend.ef_search == report.params["ef_search"]


def test_tune_command_on_exact_index_says_nothing_to_tune(tmp_path, demo_copy, capsys):
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(demo_copy)
    assert main(["tune", "--index", str(tmp_path / "idx")]) == 0
    assert "nothing to tune" in capsys.readouterr().out


def synthetic_index(folder, vectors: np.ndarray, **options) -> ImageIndex:
    """An index holding `vectors` as if embedded from photos (records are made up: nothing is read back)."""
    from lookalike.index import NewImage

    index = ImageIndex.create(folder, pca=0, dba=0, **options)
    run = index.sync()
    run.store_images([NewImage(f"/made-up/{n}.jpg", f"hash{n}", 1, 0.0, 8, 8) for n in range(len(vectors))], vectors)
    run.finish()
    return index


def test_tune_measures_recall_on_images_held_out_of_a_copy_of_the_index(tmp_path, collection):
    """The recall tune reports is what new photos get: the chosen ef_search reaches it on 50 vectors never indexed."""
    _, vectors, queries, truth = collection
    with synthetic_index(tmp_path / "idx", vectors, index_type="hnsw") as index:
        report = index.tune(target_recall=0.95, sample=200)
        assert report.measured.startswith("held out: 200 images left out")
        _, found = index._store.backend.search(queries, 10)
        held_out = recall_at_k(found, index.ids()[truth], None, 10)  # truth holds rows of `vectors`
    assert report.recall >= 0.95 and held_out >= report.recall - 0.03


def test_tune_says_when_it_can_only_measure_in_sample(tmp_path, demo_copy, monkeypatch):
    monkeypatch.setattr(tune, "LEAVE_OUT_LIMIT", 10)  # a copy of the index would cost too much
    with ImageIndex.create(tmp_path / "idx", index_type="hnsw") as index:
        index.add_folder(demo_copy)
        report = index.tune(target_recall=0.9, sample=20)
    assert report.measured.startswith("in-sample") and "overstated" in report.measured
    assert report.to_dict()["measured"] == report.measured


def test_a_user_sets_ef_search_themselves_and_its_recall_is_measured_held_out(tmp_path, collection):
    _, vectors, _, _ = collection
    with synthetic_index(tmp_path / "idx", vectors, index_type="hnsw") as index:
        report = index.tune(sample=100, ef_search=16)
        assert index._store.backend.ef_search == 16 and report.params == {"ef_search": 16}
        assert [t.params for t in report.trials] == [{"ef_search": 16}]  # that setting only, measured
        assert report.measured.startswith("held out") and 0 < report.recall <= 1
    manifest = read_manifest(tmp_path / "idx")
    assert manifest.index_params["ef_search"] == 16 and manifest.tuned["set_by_user"] is True


def test_a_knob_the_index_type_does_not_have_is_refused(tmp_path, collection):
    _, vectors, _, _ = collection
    with synthetic_index(tmp_path / "exact", vectors[:200]) as index, pytest.raises(ValueError, match="no search knob"):
        index.tune(ef_search=32)
    with synthetic_index(tmp_path / "graph", vectors[:200], index_type="hnsw") as index:
        with pytest.raises(ValueError, match="cannot set nprobe; its knobs are ef_search"):
            index.tune(nprobe=8)
        with pytest.raises(ValueError, match="whole number"):
            index.tune(ef_search=0)


def test_tune_command_takes_the_knob_by_the_same_name(tmp_path, collection, capsys):
    _, vectors, _, _ = collection
    synthetic_index(tmp_path / "idx", vectors[:500], index_type="hnsw").close()
    assert main(["tune", "--index", str(tmp_path / "idx"), "--ef-search", "48", "--sample", "50"]) == 0
    assert "set {'ef_search': 48} as asked" in capsys.readouterr().out
    assert read_manifest(tmp_path / "idx").index_params["ef_search"] == 48


def test_tune_measures_the_default_call_as_the_searcher_makes_it(tmp_path, collection):
    """tune's recall is of the whole default call (first answer, expansion, guard over DBA floors): run with exact
    searches, its answers are the ids ImageIndex.search gives on an exact index."""
    from lookalike.index import NewImage

    _, vectors, queries, _ = collection
    with ImageIndex.create(tmp_path / "idx", pca=32) as index:  # the default augmentation (DBA)
        run = index.sync()
        run.store_images([NewImage(f"/made-up/{n}.jpg", f"hash{n}", 1, 0.0, 8, 8) for n in range(600)], vectors[:600])
        run.finish()
        store, ids = index._store, index.ids()
        plain, floors = store.searchable_vectors(ids.tolist()), store.neighbour_floors(ids.tolist(), 10)
        call = tune.default_call(store.to_searchable(queries), ids, store.indexed_vectors(ids.tolist()), plain,
                                 floors, 10)
        found = call(lambda searched, count: store.search(searched, count, searchable=True))
        searched = [[m.id for m in index.search(vector=q, k=10).matches] for q in queries]
        assert store.augmented_count() == 600
    assert found.tolist() == searched


def test_held_out_images_are_not_blended_into_the_copy_tune_searches(tmp_path, collection):
    """The copy tune measures on is augmented as an index of the other images alone would be: no held-out image is
    left in a neighbour's blended vector or floor (where it would lead the search to its neighbours)."""
    from lookalike.expansion import GUARD_NEIGHBOUR
    from lookalike.index import NewImage
    from lookalike.index.augmentation import AugmentationPlan, augment_all
    from lookalike.index.resident import floors_of

    _, vectors, _, _ = collection
    with ImageIndex.create(tmp_path / "idx", pca=32) as index:
        run = index.sync()
        run.store_images([NewImage(f"/made-up/{n}.jpg", f"hash{n}", 1, 0.0, 8, 8) for n in range(600)], vectors[:600])
        run.finish()
        store, plan = index._store, AugmentationPlan.of(index.manifest.augmentation_plan)
        rest = np.setdiff1d(index.ids(), index.ids()[::7])
        held, plain, floors = tune.held_out_rows(store, rest, plan)
        graph, alone = augment_all(rest, store.searchable_vectors(rest.tolist()), plan)
    np.testing.assert_allclose(held, alone, atol=1e-5)
    np.testing.assert_allclose(floors, floors_of(graph.similarities, GUARD_NEIGHBOUR), atol=1e-6)


def test_a_setting_reaches_the_target_only_beyond_its_measurement_error():
    """Recall measured on a sample is uncertain: a setting whose recall is at the target only within its standard
    error is not taken (tune picked ef 16 at 0.951 on 500 images; new photos got 0.949 there)."""
    truth = np.arange(1000, dtype=np.int64).reshape(100, 10)

    class Graph:  # at ef 16, 8 queries find 4 of their 10 (recall 0.952, standard error 0.016); from 24 all
        kind, ef_search = "hnsw", 64

        def set_search_params(self, ef_search):
            self.ef_search = ef_search

        def search(self, queries, k):
            found = truth.copy()
            if self.ef_search < 24:
                found[:8, :6] = -1
            return np.zeros(found.shape, np.float32), found

    report = tune_backend(Graph(), np.zeros((100, 4), np.float32), truth, target_recall=0.95)
    first = report.trials[0]
    assert first.params == {"ef_search": 16} and first.recall == pytest.approx(0.952) and first.reaches < 0.95
    assert report.params == {"ef_search": 24} and report.recall == 1.0
