"""`k="auto"`: a search that stops where its matches stop belonging to the query, instead of at a fixed count.

Two readings of each ranked match, neither a threshold tuned to a collection or a model:
- the neighbour test: a match can belong only when the query would be one of its own nearest images, closer to it
  than it is to its BELONG_NEIGHBOUR-th nearest indexed neighbour (the floor the guard of lookalike.expansion uses).
  It reads each match's own neighbourhood (a match in a tight crowd of look-alikes needs a close query, a loner
  accepts a looser one) and, like any reverse-neighbour test, passes about BELONG_NEIGHBOUR matches on average;
- the break: among those, the similarity curve (best first, ending at the best match that failed the test) is cut
  where it falls most steeply, so the answer ends where the photos of the very thing in the query give way to the
  rest (three views of an object at 0.8-0.95, then other photos of its kind at 0.45).
The first match always belongs (a search answers something; lookalike.confidence says when even that one is not
close), and at most AUTO_CAP are kept. Precision and recall against labels on clothing, Corel-1K and instance sets,
beside k = 10: benchmarks/cutoff.py.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lookalike.expansion import GUARD_NEIGHBOUR

AUTO = "auto"
AUTO_CAP = 100  # the most matches k="auto" returns (and the candidates it looks at)
BELONG_NEIGHBOUR = GUARD_NEIGHBOUR  # the query must come before a match's 10th nearest neighbour

Matrix = npt.NDArray[np.float32]


def is_auto(k: object) -> bool:
    """Whether a k asks for the adaptive cut-off ("auto", any case and spacing)."""
    return isinstance(k, str) and k.strip().lower() == AUTO


def belonging(similarities: Matrix, floors: Matrix) -> npt.NDArray[np.bool_]:
    """Which ranked matches belong to the query (see the module), from its plain similarity to each (the index's
    space) and each match's similarity to its BELONG_NEIGHBOUR-th nearest neighbour (`floors`)."""
    similarities = np.asarray(similarities, np.float32)
    passed = similarities >= np.asarray(floors, np.float32)
    if not len(passed):
        return passed
    passed[0] = True
    kept = passed & (similarities >= steepest_break(similarities[passed], similarities[~passed]))
    kept[0] = True  # the first as ranked, whatever its plain similarity
    kept[np.cumsum(kept) > AUTO_CAP] = False
    return kept


def steepest_break(passed: Matrix, failed: Matrix) -> float:
    """The lowest similarity kept: the curve of the passed similarities, best first, and then the best failed one
    below them, is cut at its largest drop."""
    curve = np.sort(passed)[::-1]
    below = failed[failed < curve[-1]]
    if len(below):
        curve = np.append(curve, below.max())
    if len(curve) < 2:
        return float(curve[0])
    return float(curve[int(np.argmax(curve[:-1] - curve[1:]))])


def kth_other_similarity(inner: Matrix, ids: npt.NDArray[np.int64], own: npt.NDArray[np.int64],
                         column: int = BELONG_NEIGHBOUR) -> Matrix:
    """Each row's similarity to its `column`-th nearest image other than itself, from a search of the images'
    own vectors (`inner`, `ids`: one row per image in `own`, best first, padded with id -1); -inf when the index
    holds fewer images (then every match passes the neighbour test)."""
    floors = np.full(len(own), -np.inf, np.float32)
    for row, image_id in enumerate(own):
        others = inner[row][(ids[row] != image_id) & (ids[row] >= 0)]
        if len(others) >= column:
            floors[row] = others[column - 1]
    return floors
