"""The pair-correlation study: how well each similarity method's score tracks "same attribute value".

Every learned method trains on the training pairs of a PairSet and is scored on its evaluation
pairs, whose images it never saw. Pearson and Spearman correlate the score with the 0/1 truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_auc_score, roc_curve
from tqdm import tqdm

from lookalike.errors import RequestError
from lookalike.index import ImageIndex
from lookalike.similarity.methods import (
    BEST_METHOD,
    LEARNED_METHODS,
    STUDY_METHODS,
    SimilarityMethod,
    fit_method,
    make_method,
)
from lookalike.similarity.pairs import DEFAULT_EVAL_FRACTION, DEFAULT_PAIRS, PairSet
from lookalike.similarity.trained import describe_method, save_method


@dataclass
class MethodResult:
    method: str
    learned: bool
    pearson: float
    spearman: float
    roc_auc: float
    accuracy: float  # at the best threshold on the evaluation pairs (an upper bound for a fixed threshold)
    threshold: float
    fit_seconds: float
    scores: npt.NDArray[np.float64] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "learned": self.learned, "pearson": round(self.pearson, 4),
                "spearman": round(self.spearman, 4), "roc_auc": round(self.roc_auc, 4),
                "accuracy": round(self.accuracy, 4), "threshold": round(self.threshold, 6),
                "fit_seconds": round(self.fit_seconds, 2)}


@dataclass
class PairStudy:
    pairs: dict[str, Any]
    truth: npt.NDArray[np.int8]
    results: list[MethodResult]
    trained: dict[str, SimilarityMethod] = field(default_factory=dict, repr=False)

    def best_learned(self) -> MethodResult:
        return max((r for r in self.results if r.learned), key=lambda r: r.pearson)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "results": [r.to_dict() for r in self.results]}

    def to_markdown(self) -> str:
        lines = ["| method | Pearson | Spearman | ROC AUC | accuracy (best threshold) | fit s |",
                 "|---|---|---|---|---|---|"]
        lines += [f"| {r.method} | {r.pearson:.3f} | {r.spearman:.3f} | {r.roc_auc:.3f} | {r.accuracy:.3f} | "
                  f"{r.fit_seconds:.1f} |" for r in self.results]
        return "\n".join(lines)

    def to_text(self) -> str:
        lines = [f"{'method':<12} {'Pearson':>8} {'Spearman':>9} {'ROC AUC':>8} {'accuracy':>9} {'fit s':>7}"]
        lines += [f"{r.method:<12} {r.pearson:>8.3f} {r.spearman:>9.3f} {r.roc_auc:>8.3f} {r.accuracy:>9.3f} "
                  f"{r.fit_seconds:>7.1f}" for r in self.results]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Histograms of the scores of similar vs dissimilar evaluation pairs, one panel per method."""
        from lookalike.plots import matplotlib_for

        matplotlib_for("the study's plot")
        import matplotlib.pyplot as plt

        columns = min(3, len(self.results))
        rows = -(-len(self.results) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
        for axis, result in zip(axes.flat, self.results, strict=False):
            bins = np.linspace(result.scores.min(), result.scores.max(), 40)
            axis.hist(result.scores[self.truth == 1], bins=bins, alpha=0.6, label="similar", color="tab:green")
            axis.hist(result.scores[self.truth == 0], bins=bins, alpha=0.6, label="dissimilar", color="tab:red")
            axis.set_title(f"{result.method}: r={result.pearson:.2f}, AUC={result.roc_auc:.2f}", fontsize=10)
            axis.set_xlabel("score")
        for axis in list(axes.flat)[len(self.results):]:
            axis.axis("off")
        axes.flat[0].legend()
        figure.suptitle(f"held-out pairs, attribute {self.pairs['attribute']!r}")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return Path(path)

    def write(self, folder: str | Path) -> dict[str, Path]:
        """study.md, study.json and study.png in `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        described = ", ".join(f"{k} {v}" for k, v in self.pairs.items() if k != "values")
        (folder / "study.md").write_text(f"Pairs: {described}.\n\n{self.to_markdown()}\n")
        (folder / "study.json").write_text(json.dumps(self.to_dict(), indent=2))
        return {"markdown": folder / "study.md", "json": folder / "study.json", "plot": self.plot(folder / "study.png")}


def run_study(pair_set: PairSet, methods: Sequence[str] = STUDY_METHODS, progress: bool = True) -> PairStudy:
    """Train every method on the training pairs, score the evaluation pairs."""
    training = pair_set.training_data()
    first, second = pair_set.vectors_of(pair_set.eval)
    truth = pair_set.eval.same
    results, trained = [], {}
    for name in tqdm(methods, desc="methods", disable=not progress):
        method = make_method(name)
        started = time.perf_counter()
        fit_method(method, training)
        fit_seconds = time.perf_counter() - started
        results.append(measure(name, method.learned, method.score(first, second), truth, fit_seconds))
        trained[name] = method
    return PairStudy(pair_set.describe(), truth, results, trained)


def measure(name: str, learned: bool, scores: npt.NDArray[np.float64], truth: npt.NDArray[np.int8],
            fit_seconds: float = 0.0) -> MethodResult:
    scores = np.asarray(scores, dtype=np.float64)
    accuracy, threshold = best_threshold_accuracy(scores, truth)
    return MethodResult(name, learned, _correlation(pearsonr, scores, truth), _correlation(spearmanr, scores, truth),
                        float(roc_auc_score(truth, scores)), accuracy, threshold, fit_seconds, scores)


def best_threshold_accuracy(scores: npt.NDArray[np.float64], truth: npt.NDArray[np.int8]) -> tuple[float, float]:
    false_positive, true_positive, thresholds = roc_curve(truth, scores)
    positives = truth.sum()
    negatives = len(truth) - positives
    accuracy = (true_positive * positives + (1 - false_positive) * negatives) / len(truth)
    best = int(np.argmax(accuracy))
    return float(accuracy[best]), float(thresholds[best])


def _correlation(function: Any, scores: npt.NDArray[np.float64], truth: npt.NDArray[np.int8]) -> float:
    if np.ptp(scores) == 0:
        return 0.0  # a constant score carries no information
    return float(function(scores, truth)[0])


def train_similarity(index: ImageIndex, dataset: str | Path, attribute: str = "label", method: str = BEST_METHOD,
                     name: str | None = None, size: int = DEFAULT_PAIRS, eval_fraction: float = DEFAULT_EVAL_FRACTION,
                     seed: int = 0, split: str | None = None) -> dict[str, Any]:
    """Train a learned method on a labelled folder's pairs, measure it on the held-out pairs, save it
    in the index; returns what was saved in its JSON description."""
    model = make_method(method)
    if not model.learned:
        raise RequestError(f"{method!r} is a fixed measure, there is nothing to train; choose from "
                         f"{', '.join(LEARNED_METHODS)}")
    pair_set = PairSet.build(dataset, attribute, index, size=size, eval_fraction=eval_fraction, seed=seed,
                             split=split)
    started = time.perf_counter()
    fit_method(model, pair_set.training_data())
    fit_seconds = time.perf_counter() - started
    held_out = measure(method, True, model.score(*pair_set.vectors_of(pair_set.eval)), pair_set.eval.same,
                       fit_seconds)
    trained_on = {"pairs": pair_set.describe() | {"split": split}, "held_out": held_out.to_dict()}
    path = save_method(index, model, trained_on, name)
    return describe_method(index, path.stem)
