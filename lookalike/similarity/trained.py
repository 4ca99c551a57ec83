"""Trained similarity models inside an index folder, and how the one search ranks with them.

A model is INDEX/similarity/NAME.joblib with NAME.json saying what it learned from. Every trained
model is a search method of its index: `index.search(query, method=NAME)` goes through the
`LearnedSimilarity` provider registered by lookalike.similarity. This module stays light to import
(no scikit-learn): the models themselves are only loaded when a search or a training asks for them.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders.spec import ModelMismatchError, check_same_vectors
from lookalike.errors import RequestError
from lookalike.search import METRICS, Vector

if TYPE_CHECKING:
    from pathlib import Path

    from lookalike.embedders import Matrix
    from lookalike.index import ImageIndex
    from lookalike.similarity.methods import SimilarityMethod

DEFAULT_CANDIDATES = 300  # images the vector index retrieves for a pair classifier to re-rank
Ids = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


# --- the models of an index ------------------------------------------------------------------------
def save_method(index: ImageIndex, method: SimilarityMethod, trained_on: dict[str, Any],
                name: str | None = None) -> Path:
    """Store a trained method as INDEX/similarity/NAME.joblib, with NAME.json saying what it learned from."""
    import joblib

    name = name or method.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise RequestError(f"model name {name!r}: use letters, digits, '-', '_' and '.'")
    if name in METRICS:
        raise RequestError(f"{name!r} is a built-in measure; give the trained model another name")
    folder = index.files.similarity_models
    folder.mkdir(exist_ok=True)
    joblib.dump(method, folder / f"{name}.joblib")
    description = {"name": name, "method": method.name, "embedder": index.manifest.embedder,
                   "trained": time.strftime("%Y-%m-%dT%H:%M:%S%z")} | trained_on
    (folder / f"{name}.json").write_text(json.dumps(description, indent=2, default=str))
    _loaded.pop((str(index.folder), name), None)
    return folder / f"{name}.joblib"


def trained_methods(index: ImageIndex) -> list[str]:
    """The names of the similarity models trained for this index."""
    return sorted(p.stem for p in index.files.similarity_models.glob("*.json"))


def describe_method(index: ImageIndex, name: str) -> dict[str, Any]:
    """What a trained model learned from (its NAME.json)."""
    path = index.files.similarity_models / f"{name}.json"
    if not path.exists():
        trained = ", ".join(trained_methods(index)) or "none yet"
        raise FileNotFoundError(f"no similarity model {name!r} in {index.folder} (trained: {trained}; built in: "
                                f"{', '.join(METRICS)}); train one with `lookalike train-similarity`")
    return json.loads(path.read_text())


_loaded: dict[tuple[str, str], tuple[float, SimilarityMethod]] = {}


def load_method(index: ImageIndex, name: str) -> SimilarityMethod:
    """A trained method of this index; refused when it learned from another embedder's vectors."""
    import joblib

    try:
        check_same_vectors(index.manifest.embedder, describe_method(index, name)["embedder"], whose="model")
    except ModelMismatchError as error:
        raise ModelMismatchError(f"similarity model {name!r} was trained on another embedder's vectors: {error}; "
                                 "retrain it on this index") from error
    path = index.files.similarity_models / f"{name}.joblib"
    stamp = os.path.getmtime(path)
    key = (str(index.folder), name)
    if key not in _loaded or _loaded[key][0] != stamp:
        _loaded[key] = (stamp, joblib.load(path))
    return _loaded[key][1]


# --- search: what the learned methods add to the one search -------------------------------------------
class LearnedSimilarity:
    """The trained models of an index as search methods; scores are the model's probability of "similar".

    Methods that embed images one by one (projection, agreement) score every indexed image (within the
    allowed ones), their embeddings of the index computed once per index generation; pair classifiers
    (logreg, forest) re-rank the `max(k, candidates)` images nearest the query by cosine.
    """

    def __init__(self, candidates: int = DEFAULT_CANDIDATES):
        self.candidates = candidates

    def names(self, index: ImageIndex) -> list[str]:
        return [name for name in trained_methods(index) if name not in METRICS]

    def rank(self, index: ImageIndex, vector: Vector, method: str, k: int, exclude: set[int],
             allowed: Ids | None) -> tuple[Ids, Scores]:
        """The best `k` images for the query vector by the trained model `method`, best first."""
        model = load_method(index, method)
        query = np.asarray(vector, np.float32).reshape(1, -1)
        if hasattr(model, "embed"):
            ids, scores = _scored_by_embedding(index, method, model, query, allowed)
        else:
            ids, scores = self._rescored_candidates(index, model, query, k, exclude, allowed)
        keep = ~np.isin(ids, list(exclude))
        ids, scores = ids[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")[:k]
        return ids[order], scores[order].astype(np.float32)

    def _rescored_candidates(self, index: ImageIndex, model: SimilarityMethod, query: Matrix, k: int,
                             exclude: set[int], allowed: Ids | None) -> tuple[Ids, npt.NDArray[np.float64]]:
        ids, _ = index.searcher.nearest(query[0], max(k, self.candidates) + len(exclude), allowed)
        if len(ids) == 0:
            return ids, np.zeros(0)
        return ids, model.score(np.repeat(query, len(ids), axis=0), index.vectors(ids.tolist()))


def _scored_by_embedding(index: ImageIndex, name: str, model: Any, query: Matrix,
                         allowed: Ids | None) -> tuple[Ids, npt.NDArray[np.float64]]:
    ids, embedded = _embedded_index(index, name, model)
    if allowed is not None:
        inside = np.isin(ids, allowed)
        ids, embedded = ids[inside], embedded[inside]
    if len(ids) == 0:
        return ids, np.zeros(0)
    return ids, model.compare(np.repeat(model.embed(query), len(ids), axis=0), embedded)


_embedded: dict[tuple[str, str], tuple[tuple[int, int], Ids, Matrix]] = {}


def _embedded_index(index: ImageIndex, name: str, model: Any) -> tuple[Ids, Matrix]:
    """Every indexed image embedded by the model, recomputed when the index or the model changes."""
    from threadpoolctl import threadpool_limits

    key = (str(index.folder), name)
    version = (index.generation, id(model))
    if key not in _embedded or _embedded[key][0] != version:
        ids, vectors = index.vectors()
        with threadpool_limits(limits=1, user_api="blas"):
            _embedded[key] = (version, ids, model.embed(vectors) if len(ids) else np.zeros((0, 1)))
    return _embedded[key][1], _embedded[key][2]
