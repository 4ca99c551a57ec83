"""Whether an answer can be trusted, judged in the result itself, for every index and every door.

Two readings of a search:
- `similarity`: the plain cosine between the query and a match in the index's space, whatever re-ranking
  ordered the matches (an identical photo is 1.0). From SAME_PHOTO up a match is the same photo; from NEAR_COPY
  up, when the keypoint check of the duplicates finder agrees (resized, re-encoded, cropped or rotated a little,
  brightened: benchmarks/trust.py measures both against the closest distinct photos).
- low confidence: the full-vector cosine of the best match below what this index's own images get from
  theirs. The floor is calibrated on the index itself (a sample of its images, each searched like a query,
  its best other match's full-vector cosine; the FLOOR_PERCENTILE-th percentile), so it holds for any model,
  reduction or collection without a table of constants; it is recalibrated when the index grows or shrinks by
  a tenth. A classifier that is unsure of the query's class (by_class) is doubtful too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SAME_PHOTO = 0.97
NEAR_COPY = 0.8  # from here up to SAME_PHOTO a match is the same photo only if the keypoint check agrees
CHECKED_MATCHES = 3  # only the first matches are checked (a copy comes first; the check costs ~20-40 ms)
FLOOR_PERCENTILE = 2.0
CALIBRATION_SAMPLE = 256
MIN_IMAGES = 10  # fewer images than this give no floor (under ~30 the floor is rough: about the lowest one)
CLASS_PROBABILITY_FLOOR = 0.498  # measured in benchmarks/confidence.py: the in-domain 5th percentile
Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Floor:
    """The full-vector cosine under which a best match is doubtful, for an index of `count` images."""

    cosine: float
    typical: float  # the median, to say what a usual answer gets
    count: int

    def is_stale(self, count: int) -> bool:
        return abs(count - self.count) > self.count / 10


def floor_from(best_cosines: Matrix, count: int) -> Floor | None:
    """The floor from the best-match cosines of sampled indexed images (None below MIN_IMAGES)."""
    if count < MIN_IMAGES or len(best_cosines) == 0:
        return None
    return Floor(float(np.percentile(best_cosines, FLOOR_PERCENTILE)), float(np.median(best_cosines)), count)


@dataclass(frozen=True)
class Judgement:
    low_confidence: bool
    note: str | None


def judge(best_cosine: float | None, floor: Floor | None, filtered: bool,
          predicted_class: dict[str, float] | None, same_photo_similarity: float | None) -> Judgement:
    """The result's low_confidence flag and its one-line note (None when there is nothing to say);
    `same_photo_similarity` is the first match's similarity when it is the same photo, else None."""
    if best_cosine is None:
        return Judgement(False, "No images matched." if not filtered else "No image the filters allow matched.")
    if floor is not None and best_cosine < floor.cosine:
        where = "among the images the filters allow" if filtered else "in the index"
        hint = "" if filtered else ": it may show something the index does not hold"
        return Judgement(True, f"Nothing {where} is close to this photo (best full-vector cosine {best_cosine:.2f}; "
                               f"this index's own photos usually get {floor.typical:.2f}){hint}.")
    if predicted_class and max(predicted_class.values()) < CLASS_PROBABILITY_FLOOR:
        name, probability = max(predicted_class.items(), key=lambda item: item[1])
        return Judgement(True, f"The classifier is unsure of this photo's class ({name}, probability "
                               f"{probability:.2f}): the search may be in the wrong class.")
    if same_photo_similarity is not None:
        return Judgement(False, f"The first match is the same photo (similarity {same_photo_similarity:.3f}).")
    return Judgement(False, None)


def is_same_photo(similarity: float, query_photo: str | bytes | None, match_path: str) -> bool:
    """A match is the same photo from SAME_PHOTO up; from NEAR_COPY up when the keypoint check (lookalike.copy_check:
    one small rotation-scale-shift maps one onto the other and the pixels agree) says it is a copy of the query."""
    if query_photo is None:  # words or a bare vector: no photo to be the same as
        return False
    if similarity >= SAME_PHOTO:
        return True
    if similarity < NEAR_COPY or "://" in match_path:
        return False
    from lookalike.copy_check import check_copy  # OpenCV, loaded the first time a near copy is checked

    return check_copy(query_photo, match_path).is_copy()


def best_cosines(vectors: Matrix, neighbour_vectors: Matrix) -> Matrix:
    """Row-wise cosine of each full vector with its best match's full vector."""
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(neighbour_vectors, axis=1)
    return (np.sum(vectors * neighbour_vectors, axis=1) / np.maximum(norms, 1e-12)).astype(np.float32)
