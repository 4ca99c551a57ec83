"""Classify-then-search: a logistic regression on an index's vectors, used to narrow a search to
the query's predicted class (or its few most likely classes when the classifier is unsure).

The trained classifier lives in the index folder (its weights and description, named by
lookalike.index.folder) with the description of the embedder whose vectors it was trained on;
loading it against an index built by another model is refused. `ClassScope` is the `by_class`
option of the one search: `index.search(query, by_class=2, class_confidence=0.8)`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders.spec import check_same_vectors
from lookalike.errors import RequestError
from lookalike.evaluation import average_precision
from lookalike.index import ImageIndex, ModelMismatchError
from lookalike.index.folder import IndexFolder
from lookalike.organise.labels import LabelImport, import_labels, labelled_ids
from lookalike.search import DEFAULT_CLASS_CONFIDENCE, Scope, SearchOptions, Vector

HELD_OUT_SPLITS = ("test", "validation", "query")


@dataclass
class Classifier:
    """Multinomial logistic regression: probabilities = softmax(vectors @ weights.T + bias)."""

    classes: list[str]
    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    embedder: dict[str, Any]
    attribute: str = "label"
    facts: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        logits = np.atleast_2d(vectors).astype(np.float64) @ self.weights.T.astype(np.float64) + self.bias
        if len(self.classes) == 2 and logits.shape[1] == 1:  # scikit-learn's binary form
            logits = np.hstack([np.zeros_like(logits), logits])
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, vectors: npt.NDArray[np.float32]) -> list[str]:
        return [self.classes[i] for i in self.probabilities(vectors).argmax(axis=1)]

    def likely_classes(self, vector: npt.NDArray[np.float32], at_most: int = 1,
                       confidence: float = DEFAULT_CLASS_CONFIDENCE) -> dict[str, float]:
        """The top class, plus the next ones (up to `at_most`) until their probabilities add up to `confidence`."""
        probabilities = self.probabilities(vector)[0]
        chosen: dict[str, float] = {}
        for i in np.argsort(-probabilities)[:max(1, at_most)]:
            chosen[self.classes[i]] = float(probabilities[i])
            if sum(chosen.values()) >= confidence:
                break
        return chosen


@dataclass
class TrainingReport:
    accuracy: float
    train_count: int
    test_count: int
    held_out: str  # how the test images were chosen
    classes: list[str]
    confusion: npt.NDArray[np.int64]
    skipped: LabelImport
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": round(self.accuracy, 4), "train": self.train_count, "test": self.test_count,
                "held_out": self.held_out, "classes": self.classes, "confusion": self.confusion.tolist(),
                "skipped": self.skipped.to_dict(), "files": self.files}


def train_classifier(index: ImageIndex, labels_csv: str | os.PathLike[str], attribute: str = "label",
                     test_fraction: float = 0.2, seed: int = 0, store_labels: bool = True) -> TrainingReport:
    """Fit on the index's vectors of the CSV's images, report held-out accuracy, save next to the index.

    The CSV's `split` column, when it has a test/validation/query split, decides the held-out images
    (they are not trained on); otherwise a stratified random `test_fraction` is held out. The labels
    are also imported into the index (`store_labels`), so searches can be filtered by class.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix

    found, skipped = labelled_ids(index, labels_csv, attribute)
    if store_labels:
        import_labels(index, labels_csv)
    if len(set(found.values())) < 2:
        raise RequestError(f"{labels_csv} names fewer than two {attribute!r} classes among indexed images; "
                         f"a classifier needs at least two ({skipped.summary()})")
    train_ids, test_ids, held_out = _split(index, labels_csv, found, test_fraction, seed)
    model = _fit(index, train_ids, [found[i] for i in train_ids], seed)
    classifier = Classifier([str(c) for c in model.classes_], model.coef_.astype(np.float32),
                            model.intercept_.astype(np.float32), index.manifest.embedder, attribute)
    truth = [found[i] for i in test_ids]
    predicted = classifier.predict(index.vectors(test_ids)) if test_ids else []
    accuracy = float(accuracy_score(truth, predicted)) if test_ids else float("nan")
    confusion = confusion_matrix(truth, predicted, labels=classifier.classes) if test_ids else \
        np.zeros((len(classifier.classes),) * 2, dtype=np.int64)
    classifier.facts = {"accuracy": accuracy, "train": len(train_ids), "test": len(test_ids), "held_out": held_out}
    report = TrainingReport(accuracy, len(train_ids), len(test_ids), held_out, classifier.classes, confusion, skipped)
    report.files = [str(p) for p in save_classifier(index.folder, classifier)]
    report.files += [str(p) for p in write_confusion(index.folder, classifier.classes, confusion, accuracy)]
    return report


def _split(index: ImageIndex, labels_csv: str | os.PathLike[str], found: dict[int, str], test_fraction: float,
           seed: int) -> tuple[list[int], list[int], str]:
    from sklearn.model_selection import train_test_split

    splits, _ = labelled_ids(index, labels_csv, "split") if _has_column(labels_csv, "split") else ({}, None)
    for name in HELD_OUT_SPLITS:
        test = sorted(i for i in found if splits.get(i) == name)
        if test:
            train = sorted(i for i in found if splits.get(i, "") in ("train", "gallery", ""))
            train = train or sorted(i for i in found if splits.get(i) != name)
            return train, test, f"split {name!r} of the CSV"
    ids = sorted(found)
    counts = np.unique([found[i] for i in ids], return_counts=True)[1]
    stratify = [found[i] for i in ids] if counts.min() >= 2 else None
    train, test = train_test_split(ids, test_size=test_fraction, random_state=seed, stratify=stratify)
    return sorted(train), sorted(test), f"random stratified {test_fraction:.0%} (seed {seed})"


def _has_column(csv_path: str | os.PathLike[str], column: str) -> bool:
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        return column in next(csv.reader(handle), [])


def _fit(index: ImageIndex, ids: list[int], labels: list[str], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    model = LogisticRegression(max_iter=2000, C=10.0, random_state=seed)  # unit vectors: C=1 gives flat probabilities
    with threadpool_limits(1):  # small matrices: one BLAS thread is much faster than two on a busy machine
        return model.fit(index.vectors(ids), labels)


def save_classifier(folder: Path, classifier: Classifier) -> list[Path]:
    """Write the classifier's weights and description into an index folder."""
    files = IndexFolder(folder)
    weights, description = files.classifier_weights, files.classifier_description
    np.savez(weights, weights=classifier.weights, bias=classifier.bias)
    description.write_text(json.dumps({"classes": classifier.classes, "attribute": classifier.attribute,
                                       "embedder": classifier.embedder, "facts": classifier.facts}, indent=2))
    return [weights, description]


def load_classifier(index: ImageIndex) -> Classifier:
    """The classifier saved in the index folder; refused when trained on another model's vectors."""
    description_file = index.files.classifier_description
    if not description_file.exists():
        raise FileNotFoundError(f"no classifier in {index.folder}; run `lookalike train-classifier` first")
    description = json.loads(description_file.read_text())
    try:
        check_same_vectors(index.manifest.embedder, description["embedder"])
    except ModelMismatchError as error:
        raise ModelMismatchError(f"the classifier in {index.folder} was trained on another model's vectors: "
                                 f"{error}; train it again") from None
    arrays = np.load(index.files.classifier_weights)
    return Classifier(description["classes"], arrays["weights"], arrays["bias"], description["embedder"],
                      description["attribute"], description.get("facts", {}))


def write_confusion(folder: Path, classes: Sequence[str], confusion: npt.NDArray[np.int64],
                    accuracy: float) -> list[Path]:
    """The confusion matrix as text and, with the maps extra (matplotlib), as a PNG (rows: true class, columns:
    predicted). A classifier is for searching: it needs no pictures, so without the extra only the text is written."""
    from lookalike import plots

    files = IndexFolder(folder)
    text = files.classifier_confusion_txt
    width = max(8, *(len(c) for c in classes)) + 1
    lines = [f"held-out accuracy {accuracy:.4f}; rows: true class, columns: predicted", "",
             " " * width + "".join(f"{c[:width - 1]:>{width}}" for c in classes)]
    lines += [f"{c:<{width}}" + "".join(f"{n:>{width}}" for n in row)
              for c, row in zip(classes, confusion, strict=True)]
    text.write_text("\n".join(lines) + "\n")
    if not plots.available():
        return [text]
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.6 * len(classes)))
    ConfusionMatrixDisplay(confusion, display_labels=list(classes)).plot(ax=axes, colorbar=False,
                                                                         xticks_rotation=45)
    axes.set_title(f"held-out accuracy {accuracy:.3f}")
    figure.tight_layout()
    image = files.classifier_confusion_png
    figure.savefig(image, dpi=100)
    plt.close(figure)
    return [text, image]


class ClassScope:
    """The `by_class` search option: search only among images labelled with the query's likely classes."""

    def available(self, index: ImageIndex) -> bool:
        """Whether a classifier trained on this index's model is saved in its folder."""
        try:
            load_classifier(index)
        except (FileNotFoundError, ModelMismatchError):
            return False
        return True

    def narrow(self, index: ImageIndex, vector: Vector, options: SearchOptions) -> Scope:
        """The query's top class, widened to up to `by_class` classes until `class_confidence` is reached."""
        if not index.files.classifier_description.exists():
            raise RequestError(f"by_class needs a classifier trained for this index: lookalike train-classifier "
                             f"--index {index.folder} --labels-csv LABELS.csv")
        classifier = load_classifier(index)
        classes = classifier.likely_classes(vector, options.by_class or 1, options.class_confidence)
        return Scope(classifier.attribute, tuple(classes), predicted_class=classes)


@dataclass(frozen=True)
class ClassSearchScores:
    plain_map: float
    class_map: float
    plain_p10: float
    class_p10: float
    accuracy: float
    queries: int
    gallery: int

    def to_dict(self) -> dict[str, Any]:
        return {name: round(value, 4) if isinstance(value, float) else value for name, value in self.__dict__.items()}


def evaluate_by_class(index: ImageIndex, classifier: Classifier, query_ids: list[int], query_labels: list[str],
                      gallery_ids: list[int], gallery_labels: list[str], by_class: int = 1,
                      class_confidence: float = DEFAULT_CLASS_CONFIDENCE) -> ClassSearchScores:
    """mAP and P@10 of plain search vs classify-then-search over the same queries and gallery.

    Classify-then-search returns only gallery images of the predicted class(es); for mAP over the
    whole gallery the rest are ranked after them (as if the user went on with an unfiltered search).
    """
    queries, gallery = index.vectors(query_ids), index.vectors(gallery_ids)
    similarity = queries @ gallery.T
    truth, labels = np.asarray(query_labels), np.asarray(gallery_labels)
    allowed = np.array([np.isin(labels, list(classifier.likely_classes(q, by_class, class_confidence)))
                        for q in queries])
    boosted = similarity + 4.0 * allowed  # cosine is in [-1, 1]: every allowed image ranks first
    plain, filtered = _scores(similarity, truth, labels), _scores(boosted, truth, labels)
    accuracy = float(np.mean(np.asarray(classifier.predict(queries)) == truth))
    return ClassSearchScores(plain[0], filtered[0], plain[1], filtered[1], accuracy, len(query_ids), len(gallery_ids))


def _scores(similarity: npt.NDArray[np.float32], truth: npt.NDArray[Any], labels: npt.NDArray[Any],
            k: int = 10) -> tuple[float, float]:
    order = np.argsort(-similarity, axis=1, kind="stable")
    relevant = labels[order] == truth[:, None]
    return float(np.mean([average_precision(row) for row in relevant])), float(relevant[:, :k].mean())


def evaluate_dataset_by_class(index: ImageIndex, dataset: str | os.PathLike[str], query_split: str = "test",
                              gallery_split: str = "train", by_class: int = 1,
                              class_confidence: float = DEFAULT_CLASS_CONFIDENCE) -> ClassSearchScores:
    """evaluate_by_class on a labelled folder (labels.csv with path,label,split) already in the index."""
    from lookalike.evaluation import read_labels

    classifier = load_classifier(index)
    images = read_labels(dataset, classifier.attribute)
    ids_by_path = index.ids_by_path()
    rows = [(ids_by_path[os.path.abspath(i.path)], i.label, i.split) for i in images
            if os.path.abspath(i.path) in ids_by_path]
    queries = [(i, label) for i, label, split in rows if split == query_split]
    gallery = [(i, label) for i, label, split in rows if split == gallery_split]
    if not queries or not gallery:
        raise RequestError(f"no indexed images of {dataset} in split {query_split!r} or {gallery_split!r}")
    return evaluate_by_class(index, classifier, [i for i, _ in queries], [label for _, label in queries],
                             [i for i, _ in gallery], [label for _, label in gallery], by_class, class_confidence)
