"""Similarity methods: symmetric scores, probabilities, saved models and searching with them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.index import ImageIndex, ModelMismatchError
from lookalike.similarity.methods import METHODS, fit_method, make_method, pair_features, score_matrix
from lookalike.similarity.pairs import PairSet
from lookalike.similarity.trained import LearnedSimilarity, load_method, save_method, trained_methods


@pytest.fixture(scope="module")
def demo_pairs(demo_index) -> PairSet:
    return PairSet.build(DEMO_GALLERY, "label", demo_index, size=300, seed=0)


@pytest.fixture(scope="module")
def trained(demo_pairs):
    data = demo_pairs.training_data()
    return {name: fit_method(make_method(name), data) for name in METHODS}


@pytest.fixture(scope="module")
def own_index(demo_index):
    """A writable copy of the demo index (at the same depth, so its relative photo paths still hold)."""
    folder = demo_index.folder.parent / "with-models"
    if not folder.exists():
        shutil.copytree(demo_index.folder, folder)
    index = ImageIndex.open(folder)
    yield index
    index.close()


@pytest.mark.parametrize("name", METHODS)
def test_scores_are_exactly_symmetric(trained, demo_pairs, name):
    a, b = demo_pairs.vectors_of(demo_pairs.eval)
    assert np.array_equal(trained[name].score(a, b), trained[name].score(b, a))


def test_pair_features_do_not_depend_on_order():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 8)).astype(np.float32)
    assert np.array_equal(pair_features(a, b), pair_features(b, a))
    assert pair_features(a, b).shape == (5, 16)


def test_learned_methods_give_probabilities_that_separate_held_out_pairs(trained, demo_pairs):
    a, b = demo_pairs.vectors_of(demo_pairs.eval)
    same = demo_pairs.eval.same.astype(bool)
    for name in ("logreg", "forest", "projection", "agreement"):
        scores = trained[name].score(a, b)
        assert np.all((scores >= 0) & (scores <= 1)), name
        assert scores[same].mean() > scores[~same].mean() + 0.1, name


def test_cosine_and_euclidean_match_their_definitions(trained):
    a = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    b = np.array([[0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    assert np.allclose(trained["cosine"].score(a, b), [0.0, 1.0])
    assert np.allclose(trained["euclidean"].score(a, b), [1 / (1 + np.sqrt(2)), 1.0])


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown similarity method 'siamese'"):
        make_method("siamese")


def clothing_type(path: str) -> str:
    """The demo gallery keeps each clothing type in its own folder."""
    return path.split("/")[-2]


def test_search_with_a_learned_method_returns_probabilities_best_first(own_index, trained, demo_pairs):
    save_method(own_index, trained["agreement"], {"pairs": demo_pairs.describe()})
    assert "agreement" in trained_methods(own_index)
    query = own_index.searcher.random_id(seed=2)
    result = own_index.search(query, k=8, method="agreement")
    scores = [m.score for m in result.matches]
    assert result.method == "agreement" and len(scores) == 8
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert query not in [m.id for m in result.matches]
    # the query's own type should fill the top of the list (the demo gallery has 14 of each)
    query_type = clothing_type(own_index.record(query).path)
    assert sum(clothing_type(m.path) == query_type for m in result.matches) >= 6


def test_image_wise_methods_score_every_image_and_pair_classifiers_the_candidates(own_index, trained, demo_pairs):
    save_method(own_index, trained["projection"], {"pairs": demo_pairs.describe()})
    save_method(own_index, trained["logreg"], {"pairs": demo_pairs.describe()})
    query = own_index.searcher.random_id(seed=5)
    everything = own_index.search(query, k=500, method="projection")
    assert len(everything.matches) == len(own_index) - 1
    vectors = own_index.vectors([query] + [m.id for m in everything.matches])
    direct = trained["projection"].score(np.repeat(vectors[:1], len(vectors) - 1, axis=0), vectors[1:])
    assert np.allclose([m.score for m in everything.matches], direct)
    ids, scores = LearnedSimilarity(candidates=40).rank(own_index, vectors[0], "logreg", 10, {query}, None)
    cosine_top = {m.id for m in own_index.search(query, k=40).matches}
    assert len(ids) == 10 and set(ids.tolist()) <= cosine_top and query not in ids.tolist()
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)


@pytest.mark.parametrize("method", ["projection", "logreg"])
def test_a_learned_method_searches_only_the_images_a_filter_keeps(own_index, trained, demo_pairs, method):
    save_method(own_index, trained[method], {"pairs": demo_pairs.describe()})
    own_index.set_labels({r.id: {"type": clothing_type(r.path)} for r in own_index.records()})
    query = own_index.searcher.random_id(seed=6)
    other_type = next(t for t in ("dress", "hat") if t != clothing_type(own_index.record(query).path))
    of_that_type = {r.id for r in own_index.records() if clothing_type(r.path) == other_type}
    result = own_index.search(query, k=50, method=method, where={"type": other_type})
    assert {m.id for m in result.matches} == of_that_type  # every image of that type, and nothing else
    assert all(m.labels["type"] == other_type for m in result.matches)
    assert [m.score for m in result.matches] == sorted((m.score for m in result.matches), reverse=True)
    folder = str(DEMO_GALLERY / other_type)
    under = own_index.search(query, k=50, method=method, path_prefix=folder)
    assert {m.id for m in under.matches} == {m.id for m in result.matches}


def test_min_score_drops_improbable_matches(own_index, trained, demo_pairs):
    save_method(own_index, trained["agreement"], {"pairs": demo_pairs.describe()})
    result = own_index.search(own_index.searcher.random_id(seed=4), k=50, method="agreement", min_score=0.5)
    assert result.matches and all(m.score >= 0.5 for m in result.matches)


def test_every_trained_model_is_a_method_of_its_index(own_index, trained, demo_pairs):
    save_method(own_index, trained["forest"], {"pairs": demo_pairs.describe()}, name="forest-label")
    assert own_index.searcher.methods()[:2] == ["cosine", "euclidean"]
    assert "forest-label" in own_index.searcher.methods()
    result = own_index.search(own_index.searcher.random_id(seed=1), k=5, method="forest-label")
    assert result.method == "forest-label" and len(result.matches) == 5


def test_a_model_trained_on_another_embedder_is_refused(own_index, trained, demo_pairs):
    save_method(own_index, trained["logreg"], {"pairs": demo_pairs.describe()}, name="foreign")
    description = own_index.files.similarity_models / "foreign.json"
    content = json.loads(description.read_text())
    content["embedder"]["model"] = "efficientnet-lite2"
    description.write_text(json.dumps(content))
    with pytest.raises(ModelMismatchError, match="'foreign' was trained on another embedder.*efficientnet-lite2"):
        load_method(own_index, "foreign")
    with pytest.raises(ModelMismatchError):
        own_index.search(own_index.searcher.random_id(seed=1), method="foreign")


def test_an_untrained_method_name_is_a_clear_error(own_index):
    with pytest.raises(ValueError, match="unknown method 'forest'.*train-similarity"):
        own_index.search(own_index.searcher.random_id(seed=1), method="forest")


def test_a_fixed_measure_cannot_be_saved_as_a_model(own_index, trained):
    with pytest.raises(ValueError, match="built-in"):
        save_method(own_index, trained["logreg"], {}, name="cosine")
    with pytest.raises(ValueError, match="model name"):
        save_method(own_index, trained["logreg"], {}, name="../outside")


def test_score_matrix_matches_pairwise_scores(trained, demo_pairs):
    vectors = demo_pairs.vectors[:12]
    for name in ("agreement", "logreg"):
        matrix = score_matrix(trained[name], vectors[:3], vectors)
        pairwise = trained[name].score(np.repeat(vectors[1:2], 12, axis=0), vectors)
        assert np.allclose(matrix[1], pairwise)


def test_cli_trains_then_searches_with_the_model(own_index, capsys):
    folder = str(own_index.folder)
    code = main(["train-similarity", "--index", folder, "--dataset", str(DEMO_GALLERY / "labels.csv"),
                 "--method", "projection", "--size", "300", "--json"])
    assert code == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["method"] == "projection" and saved["pairs"]["attribute"] == "label"
    assert saved["pairs"]["train_pairs"] == 210 and saved["pairs"]["image_disjoint"]
    assert saved["held_out"]["roc_auc"] > 0.8
    assert saved["embedder"] == own_index.manifest.embedder
    code = main(["search", "--index", folder, "--random", "--seed", "3", "--method", "projection", "-k", "5",
                 "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["method"] == "projection"
    assert all(0 <= m["score"] <= 1 for m in result["matches"]) and len(result["matches"]) == 5


def test_cli_errors_name_the_problem(own_index, capsys):
    folder = str(own_index.folder)
    assert main(["train-similarity", "--index", folder, "--dataset", str(DEMO_GALLERY), "--attribute", "color"]) == 2
    assert "'color'" in capsys.readouterr().err
    assert main(["train-similarity", "--index", folder, "--dataset", str(DEMO_GALLERY)]) == 2
    assert "ask for fewer pairs" in capsys.readouterr().err
    assert main(["search", "--index", folder, "--random", "--method", "forest"]) == 2
    assert "unknown method 'forest'" in capsys.readouterr().err
