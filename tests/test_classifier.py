"""Classifier on stored vectors: held-out accuracy, confusion matrix, the by_class scope, model check."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.index import ModelMismatchError
from lookalike.organise.classifier import evaluate_by_class, load_classifier, train_classifier

LABELS = DEMO_GALLERY / "labels.csv"


@pytest.fixture
def trained(demo_clone):
    report = train_classifier(demo_clone, LABELS, test_fraction=0.3)
    return demo_clone, report


def _photo(kind: str, number: int = 0) -> str:
    return str(sorted((DEMO_GALLERY / kind).glob("*.jpg"))[number])


def test_classifier_is_accurate_on_held_out_demo_photos(trained):
    index, report = trained
    assert report.train_count + report.test_count == 144 and report.test_count == 44
    assert report.accuracy >= 0.7  # 10 clothing types, ~10 training photos each
    assert report.confusion.sum() == 44 and report.confusion.trace() / 44 == pytest.approx(report.accuracy)
    text = index.files.classifier_confusion_txt.read_text()
    assert text.startswith(f"held-out accuracy {report.accuracy:.4f}") and "t-shirt" in text
    assert index.files.classifier_confusion_png.read_bytes()[:4] == b"\x89PNG"
    assert {str(index.files.classifier_weights), str(index.files.classifier_description)} <= set(report.files)


def test_by_class_returns_only_the_predicted_class(trained):
    index, _ = trained
    result = index.search(_photo("shoes"), k=10, by_class=1)
    assert list(result.predicted_class) == ["shoes"] and 0.5 < result.predicted_class["shoes"] <= 1.0
    assert result.to_dict()["predicted_class"] == pytest.approx(result.predicted_class, abs=1e-6)
    assert len(result.matches) == 10 and {m.labels["label"] for m in result.matches} == {"shoes"}


def test_by_class_narrows_a_search_that_plain_search_leaves_mixed(trained):
    index, _ = trained
    labels = index.label_values("label")
    mixed = next(i for i in sorted(labels)
                 if len({m.labels["label"] for m in index.search(i, k=20).matches}) > 1)
    narrowed = index.search(mixed, k=20, by_class=1)
    assert len({m.labels["label"] for m in narrowed.matches}) == 1
    assert {m.labels["label"] for m in narrowed.matches} == set(narrowed.predicted_class)


def test_top2_fallback_widens_to_two_classes_when_unsure(trained):
    index, _ = trained
    unsure = index.search(5, k=30, by_class=2, class_confidence=1.0)  # only certainty would stop at one
    assert len(unsure.predicted_class) == 2
    assert {m.labels["label"] for m in unsure.matches} == set(unsure.predicted_class)
    sure = index.search(5, k=30, by_class=2, class_confidence=0.01)
    assert len(sure.predicted_class) == 1 and set(sure.predicted_class) < set(unsure.predicted_class)
    assert index.search(5, k=30, by_class="top2", class_confidence=1.0).predicted_class == unsure.predicted_class


def test_by_class_without_a_classifier_is_a_clear_error(demo_clone):
    assert demo_clone.searcher.scopes()["by_class"] is False
    with pytest.raises(ValueError, match="by_class needs a classifier trained for this index: lookalike "
                                         "train-classifier"):
        demo_clone.search(1, by_class=1)
    train_classifier(demo_clone, LABELS)
    assert demo_clone.searcher.scopes()["by_class"] is True


def test_uploaded_query_with_by_class_is_embedded_once(trained, monkeypatch):
    index, _ = trained
    embed_batch = index.embedder.embed_batch
    calls = []

    def counted(batch):
        calls.append(len(batch))
        return embed_batch(batch)

    monkeypatch.setattr(index.embedder, "embed_batch", counted)
    with open(_photo("hat", 1), "rb") as handle:
        result = index.search(handle.read(), k=5, by_class=1)
    assert calls == [1]
    assert result.query == "<uploaded image>" and list(result.predicted_class) == ["hat"]
    assert {m.labels["label"] for m in result.matches} == {"hat"}


def test_classify_then_search_beats_plain_on_held_out_queries(trained):
    index, _ = trained
    classifier = load_classifier(index)
    labels = index.label_values("label")
    ids = sorted(labels)
    queries, gallery = ids[::4], [i for i in ids if i not in ids[::4]]
    scores = evaluate_by_class(index, classifier, queries, [labels[i] for i in queries],
                               gallery, [labels[i] for i in gallery])
    assert scores.class_map > scores.plain_map and scores.queries == len(queries)


def _pretend_trained_on_another_model(index):
    description = json.loads(index.files.classifier_description.read_text())
    description["embedder"]["model"] = "resnet50"
    index.files.classifier_description.write_text(json.dumps(description))


def test_classifier_trained_on_another_model_is_refused(trained):
    index, _ = trained
    _pretend_trained_on_another_model(index)
    with pytest.raises(ModelMismatchError, match="trained on another model"):
        load_classifier(index)
    assert index.searcher.scopes()["by_class"] is False
    with pytest.raises(ModelMismatchError, match="train it again"):
        index.search(3, by_class=1)


def test_cli_search_by_class_with_another_models_classifier_says_train_it_again(trained, capsys):
    index, _ = trained
    _pretend_trained_on_another_model(index)
    folder = str(index.folder)
    index.close()
    assert main(["search", "--id", "3", "--by-class", "--index", folder]) == 2
    assert "train it again" in capsys.readouterr().err


def test_cli_train_classifier_reports_accuracy_and_skipped_rows(demo_clone, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    rows = LABELS.read_text().splitlines()
    labels.write_text("\n".join([rows[0]] + [f"{DEMO_GALLERY}/{row}" for row in rows[1:]] + ["not/here.jpg,hat"]))
    folder = str(demo_clone.folder)
    demo_clone.close()
    assert main(["train-classifier", "--index", folder, "--labels-csv", str(labels)]) == 0
    out = capsys.readouterr().out
    assert "held out 29 (random stratified 20% (seed 0)): accuracy" in out
    assert "skipped 1 rows naming images not in the index" in out
    assert "rows: true class, columns: predicted" in out


def test_cli_search_by_class_shows_the_predicted_class(trained, capsys):
    index, _ = trained
    folder = str(index.folder)
    index.close()
    assert main(["search", _photo("shoes", 1), "--by-class", "-k", "3", "--index", folder]) == 0
    out = capsys.readouterr().out
    assert "predicted class: shoes (" in out and out.count("/shoes/") == 4  # the query line and 3 matches


def test_cli_evaluate_compares_plain_and_classify_then_search(demo_copy, tmp_path, capsys):
    photos = sorted(demo_copy.glob("*/*.jpg"))
    rows = ["path,label,split"] + [f"{p.relative_to(demo_copy)},{p.parent.name},{'test' if n % 3 == 0 else 'train'}"
                                    for n, p in enumerate(photos)]
    (demo_copy / "labels.csv").write_text("\n".join(rows) + "\n")
    folder = str(tmp_path / "idx")
    assert main(["index", str(demo_copy), "--index", folder]) == 0
    assert main(["train-classifier", "--index", folder, "--labels-csv", str(demo_copy / "labels.csv")]) == 0
    assert "held out 10 (split 'test' of the CSV)" in capsys.readouterr().out
    assert main(["evaluate", str(demo_copy), "--index", folder, "--by-class", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert (scores["queries"], scores["gallery"]) == (10, 20)
    assert 0 <= scores["plain_map"] <= 1 and scores["class_p10"] <= 1 and scores["accuracy"] >= 0.5
