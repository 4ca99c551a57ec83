"""How alike two images are, from their vectors: fixed measures and models learned from labels.

Every method scores rows of two matrices pairwise, `score(a, b)[i]` for the pair (a[i], b[i]), and
is symmetric by construction: score(a, b) == score(b, a) exactly. Learned methods return the
probability that the pair is "similar" (same value of the attribute they were trained on).
scikit-learn is imported when a method is made or trained, not with this module.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lookalike.embedders import Matrix
from lookalike.errors import RequestError
from lookalike.search import METRICS
from lookalike.similarity.pairs import TrainingData

Scores = npt.NDArray[np.float64]


class SimilarityMethod(Protocol):
    name: str
    learned: bool

    def fit(self, data: TrainingData) -> SimilarityMethod:
        ...

    def score(self, a: Matrix, b: Matrix) -> Scores:
        """Pairwise scores of rows a[i], b[i]; higher means more alike."""
        ...


# --- fixed measures -------------------------------------------------------------------------
class Cosine:
    name, learned = "cosine", False

    def fit(self, data: TrainingData) -> Cosine:
        return self

    def score(self, a: Matrix, b: Matrix) -> Scores:
        return np.einsum("ij,ij->i", _unit(a), _unit(b))


class InverseEuclidean:
    name, learned = "euclidean", False

    def fit(self, data: TrainingData) -> InverseEuclidean:
        return self

    def score(self, a: Matrix, b: Matrix) -> Scores:
        return 1.0 / (1.0 + np.linalg.norm(np.asarray(a, np.float64) - b, axis=1))


# --- classifiers on symmetric pair features -------------------------------------------------------
def pair_features(a: Matrix, b: Matrix) -> Matrix:
    """|a - b| and a * b: both unchanged when a and b swap."""
    return np.hstack([np.abs(a - b), a * b]).astype(np.float32)


class PairClassifier:
    """Any scikit-learn classifier trained on pair features of labelled pairs."""

    learned = True

    def __init__(self, name: str, make_estimator: Any):
        self.name = name
        self.make_estimator = make_estimator
        self.estimator: Any = None

    def fit(self, data: TrainingData) -> PairClassifier:
        self.estimator = self.make_estimator(data.seed)
        self.estimator.fit(pair_features(data.first, data.second), data.same)
        return self

    def score(self, a: Matrix, b: Matrix) -> Scores:
        return self.estimator.predict_proba(pair_features(a, b))[:, 1]


# --- methods that learn what the attribute looks like from the labelled images --------------------
class Calibration:
    """Platt scaling: a score's probability of "similar", fitted on training pairs."""

    def __init__(self) -> None:
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression()

    def fit(self, raw: Scores, same: npt.NDArray[np.int8]) -> Calibration:
        self.model.fit(raw.reshape(-1, 1), same)
        return self

    def __call__(self, raw: Scores) -> Scores:
        return self.model.predict_proba(np.asarray(raw).reshape(-1, 1))[:, 1]


class Projection:
    """Cosine after a linear discriminant projection learned from the training images' values."""

    name, learned = "projection", True

    def fit(self, data: TrainingData) -> Projection:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        self.lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(data.image_vectors,
                                                                                    data.image_values)
        self.calibration = Calibration().fit(self._cosine(self.embed(data.first), self.embed(data.second)),
                                             data.same)
        return self

    def embed(self, vectors: Matrix) -> Matrix:
        """Each image on its own, in the space where the method compares images."""
        return _unit(self.lda.transform(vectors))

    def _cosine(self, a: Matrix, b: Matrix) -> Scores:
        return np.einsum("ij,ij->i", a, b)

    def compare(self, a: Matrix, b: Matrix) -> Scores:
        """Scores of embedded pairs: score(a, b) == compare(embed(a), embed(b))."""
        return self.calibration(self._cosine(a, b))

    def score(self, a: Matrix, b: Matrix) -> Scores:
        return self.compare(self.embed(a), self.embed(b))


class Agreement:
    """P(similar) from how much two images agree on a classifier's value probabilities, sum_c p(c|a) p(c|b).

    The classifier (standardised logistic regression) learns the values of the training images; the
    calibration is fitted on out-of-fold probabilities, so it sees the classifier's unseen-image errors.
    """

    name, learned = "agreement", True

    def fit(self, data: TrainingData) -> Agreement:
        self.classifier = _logreg(data.seed, tol=1e-3, max_iter=2000)
        out_of_fold = self._out_of_fold(data)
        self.classifier.fit(data.image_vectors, data.image_values)
        agreement = _log_agreement(out_of_fold[data.first_image], out_of_fold[data.second_image])
        self.calibration = Calibration().fit(agreement, data.same)
        return self

    def embed(self, vectors: Matrix) -> Matrix:
        return self.classifier.predict_proba(vectors)

    def compare(self, a: Matrix, b: Matrix) -> Scores:
        return self.calibration(_log_agreement(a, b))

    def score(self, a: Matrix, b: Matrix) -> Scores:
        return self.compare(self.embed(a), self.embed(b))

    def _out_of_fold(self, data: TrainingData) -> npt.NDArray[np.float64]:
        smallest = int(np.unique(data.image_values, return_counts=True)[1].min())
        folds = min(5, smallest)
        if folds < 2:
            return self.classifier.fit(data.image_vectors, data.image_values).predict_proba(data.image_vectors)
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        splitter = StratifiedKFold(folds, shuffle=True, random_state=data.seed)
        return cross_val_predict(self.classifier, data.image_vectors, data.image_values, cv=splitter,
                                 method="predict_proba")


def _log_agreement(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]) -> Scores:
    return np.log(np.clip(np.einsum("ij,ij->i", p, q), 1e-9, 1.0))


def _unit(vectors: Matrix) -> npt.NDArray[np.float64]:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _logreg(seed: int, tol: float = 1e-4, max_iter: int = 3000) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, tol=tol, max_iter=max_iter))


def _forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, max_features="sqrt", min_samples_leaf=2, n_jobs=1,
                                  random_state=seed)


def make_method(name: str) -> SimilarityMethod:
    """A fresh, untrained method by name."""
    makers: dict[str, Any] = {
        "cosine": Cosine, "euclidean": InverseEuclidean,
        "logreg": lambda: PairClassifier("logreg", _logreg), "forest": lambda: PairClassifier("forest", _forest),
        "projection": Projection, "agreement": Agreement,
    }
    if name not in makers:
        raise RequestError(f"unknown similarity method {name!r}; choose from {', '.join(makers)}")
    return makers[name]()


METHODS = ("cosine", "euclidean", "logreg", "forest", "projection", "agreement")
LEARNED_METHODS = tuple(m for m in METHODS if m not in METRICS)
STUDY_METHODS = METHODS
BEST_METHOD = "agreement"


def fit_method(method: SimilarityMethod, data: TrainingData) -> SimilarityMethod:
    """Train with one BLAS thread: these problems are small, and OpenBLAS threads competing with other
    processes for the cores made training 10 to 80 times slower on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return method.fit(data)


def score_matrix(method: SimilarityMethod, queries: Matrix, gallery: Matrix) -> npt.NDArray[np.float32]:
    """Every query against every gallery image (for evaluation), one query row at a time."""
    from threadpoolctl import threadpool_limits

    scores = np.empty((len(queries), len(gallery)), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        if hasattr(method, "embed"):  # embed each image once, then compare
            embedded_queries, embedded_gallery = method.embed(queries), method.embed(gallery)
            for row, query in enumerate(embedded_queries):
                scores[row] = method.compare(np.repeat(query[None], len(gallery), axis=0), embedded_gallery)
            return scores
        for row, query in enumerate(queries):
            scores[row] = method.score(np.repeat(query[None], len(gallery), axis=0), gallery)
    return scores
