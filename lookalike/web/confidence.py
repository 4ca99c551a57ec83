"""When an answer is doubtful: the best score, and the classifier's top probability, under which the search page says
so, so that a photo unlike anything in the index does not look like a confident answer.

The floors are measured by benchmarks/confidence.py (benchmarks/RESULTS.md): each is the 5th percentile of
clothing test photos searched in an index of the other clothing photos, so 95% of real queries get no note.
Without a reduction the score floor puts every Corel-1K photo (another domain) under it; with the default PCA,
which is fitted on the collection and centres its vectors, only 44% of them; the classifier's floor, 85%.
A cosine floor belongs to the model (and the reduction) it was measured with: other indexes get none.
"""

from __future__ import annotations

import math
from typing import Any

from lookalike.index import ImageIndex
from lookalike.search import METRICS

# (model, reduction) -> best cosine floor; the reduction as `pca128` (unwhitened) or `full`
COSINE_FLOORS = {("efficientnet-lite0", "full"): 0.577, ("efficientnet-lite0", "pca128"): 0.526}
CLASS_PROBABILITY_FLOOR = 0.498
# a learned method's score is the calibrated probability that two photos match: below even odds is doubtful
LEARNED_FLOOR = 0.5


def euclidean_score(cosine: float) -> float:
    """The Euclidean score (1 / (1 + distance)) of unit vectors with this cosine (search.scores_from_inner_products)."""
    return 1.0 / (1.0 + math.sqrt(max(0.0, 2.0 - 2.0 * cosine)))


def reduction_key(index: ImageIndex) -> str | None:
    reduction = index.reduction
    if reduction is None:
        return "full"
    if getattr(reduction, "whiten", False):
        return None
    return f"pca{reduction.dimension}"


def low_confidence(index: ImageIndex) -> dict[str, Any]:
    """Per search method the best score below which an answer is doubtful, and the classifier's floor."""
    cosine = COSINE_FLOORS.get((index.manifest["embedder"]["model"], reduction_key(index)))
    score = {} if cosine is None else {"cosine": cosine, "euclidean": round(euclidean_score(cosine), 3)}
    score |= {method: LEARNED_FLOOR for method in index.methods() if method not in METRICS}
    return {"score": score, "class_probability": CLASS_PROBABILITY_FLOOR}
