"""Is one photo a copy of another? A geometric keypoint check, the field's standard for near-duplicates.

Two photos are copies when many ORB keypoints match under one similarity transform (RANSAC: rotation,
uniform scale, shift, so resized, cropped and slightly rotated copies pass) and, once one photo is warped
onto the other by that transform, their pixels agree where they overlap (brightness and contrast removed,
so a brightened copy passes), overall and in every cell of a 4x4 grid (two frames of one scene, with a moved
trunk or a turned head, agree overall but not where they differ). Different garments photographed on the same
wall share background and pose: they find a few keypoint matches at best, and never agree pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from lookalike.images import ImageError, load_image

CHECK_SIDE = 512  # longer side the keypoints are found at
ALIGN_SIDE = 128  # longer side the aligned pixels are compared at
KEYPOINTS = 1000
RATIO = 0.8  # Lowe's ratio test for a keypoint match
RANSAC_PIXELS = 6.0  # reprojection error (at CHECK_SIDE) of an agreeing match
MAX_ROTATION = 20.0  # degrees: a copy is rotated a little
SCALES = (0.6, 1.7)  # a copy shows 60%-170% of the other's width (crops, after both are scaled to CHECK_SIDE)
MIN_OVERLAP = 0.5  # share of the smaller photo that the other covers once aligned

# Chosen on the edited-copy tuning set (benchmarks/duplicates.py): its copies had >= 13 inliers and an agreement
# >= 0.93; of its look-alikes none had both >= 9 inliers and an agreement >= 0.86.
DEFAULT_MIN_INLIERS = 12
DEFAULT_MIN_AGREEMENT = 0.9
# Worst grid cell's mean absolute difference of the aligned, standardised pixels: edited copies <= 0.37, two
# frames of one Corel scene 0.65-0.69 (benchmarks/duplicates.py).
MAX_CELL_DIFFERENCE = 0.5
GRID = 4


@dataclass(frozen=True)
class Keypoints:
    points: npt.NDArray[np.float32]  # (n, 2) at CHECK_SIDE
    descriptors: npt.NDArray[np.uint8] | None
    small: npt.NDArray[np.float32]  # grey pixels at ALIGN_SIDE
    scale: float  # ALIGN_SIDE pixels per CHECK_SIDE pixel


@dataclass(frozen=True)
class CopyCheck:
    """What the check found: agreeing keypoint matches, the aligned pixels' correlation (-1: no transform) and
    their difference in the grid cell where they differ most."""

    inliers: int
    agreement: float
    worst_cell: float = float("inf")

    def is_copy(self, min_inliers: int = DEFAULT_MIN_INLIERS, min_agreement: float = DEFAULT_MIN_AGREEMENT) -> bool:
        return (self.inliers >= min_inliers and self.agreement >= min_agreement
                and self.worst_cell <= MAX_CELL_DIFFERENCE)


@lru_cache(maxsize=2048)
def keypoints(path: str) -> Keypoints | None:
    """ORB keypoints of a photo (a file, remembered) at CHECK_SIDE and its small grey copy; None when unreadable."""
    return keypoints_of(path)


def keypoints_of(source: str | bytes) -> Keypoints | None:
    """keypoints() of a file or of bytes (an uploaded query: never remembered, so uploads cannot fill memory)."""
    import cv2  # OpenCV loads with the first check, not with the module (the CLI reads its defaults)

    try:
        pixels = load_image(source, target_side=CHECK_SIDE * 3 // 4).pixels
    except ImageError:
        return None
    grey = np.asarray(pixels.convert("L"))
    factor = CHECK_SIDE / max(grey.shape)
    grey = cv2.resize(grey, (round(grey.shape[1] * factor), round(grey.shape[0] * factor)),
                      interpolation=cv2.INTER_AREA)
    found, descriptors = cv2.ORB_create(nfeatures=KEYPOINTS).detectAndCompute(grey, None)
    points = np.array([k.pt for k in found], np.float32).reshape(-1, 2)
    scale = ALIGN_SIDE / CHECK_SIDE
    small = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return Keypoints(points, descriptors, small.astype(np.float32), scale)


def check_copy(first: str | bytes, second: str) -> CopyCheck:
    """Keypoint inliers and aligned pixel agreement of two photos (files; the first may be bytes); (0, -1) when
    nothing aligns them."""
    a, b = keypoints(first) if isinstance(first, str) else keypoints_of(first), keypoints(second)
    if a is None or b is None:
        return CopyCheck(0, -1.0)
    transform, inliers = similarity_transform(a, b)
    if transform is None:
        return CopyCheck(inliers, -1.0)
    return CopyCheck(inliers, *aligned_agreement(a, b, transform))


def similarity_transform(a: Keypoints, b: Keypoints) -> tuple[npt.NDArray[np.float64] | None, int]:
    """The rotation-scale-shift taking b's points onto a's that most ratio-tested matches agree with (RANSAC),
    and how many agree; None when there is none or it is no small edit (big rotation or scale)."""
    import cv2

    if a.descriptors is None or b.descriptors is None or len(a.points) < 3 or len(b.points) < 3:
        return None, 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(b.descriptors, a.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 3:
        return None, len(good)
    source = b.points[[m.queryIdx for m in good]]
    target = a.points[[m.trainIdx for m in good]]
    transform, agreeing = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                                      ransacReprojThreshold=RANSAC_PIXELS)
    if transform is None:
        return None, 0
    inliers = int(agreeing.sum())
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    rotation = abs(float(np.degrees(np.arctan2(transform[1, 0], transform[0, 0]))))
    if not SCALES[0] <= scale <= SCALES[1] or rotation > MAX_ROTATION:
        return None, inliers
    return transform, inliers


def aligned_agreement(a: Keypoints, b: Keypoints, transform: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Correlation of a's pixels with b's warped onto them over their overlap, and the largest mean absolute
    difference of the standardised pixels in a GRID x GRID cell (brightness and contrast removed from both);
    (-1, inf) when the overlap is under MIN_OVERLAP of the smaller photo."""
    import cv2

    small = transform.copy()
    small[:, 2] *= a.scale  # the same transform between the small copies
    height, width = a.small.shape
    warped = cv2.warpAffine(b.small, small, (width, height), flags=cv2.INTER_LINEAR, borderValue=-1.0)
    inside = cv2.warpAffine(np.ones_like(b.small), small, (width, height), flags=cv2.INTER_NEAREST) > 0.5
    inside &= warped >= 0
    if inside.sum() < MIN_OVERLAP * min(a.small.size, b.small.size):
        return -1.0, float("inf")
    x, y = a.small[inside], warped[inside]
    x, y = (x - x.mean()) / (x.std() + 1e-6), (y - y.mean()) / (y.std() + 1e-6)
    difference = np.full(a.small.shape, np.nan, np.float32)
    difference[inside] = np.abs(x - y)
    return float((x * y).mean()), _worst_cell(difference)


def _worst_cell(difference: npt.NDArray[np.float32]) -> float:
    """The largest mean over the grid cells that lie (90%) inside the overlap (nan outside it)."""
    height, width = difference.shape
    cells = [difference[i * height // GRID:(i + 1) * height // GRID, j * width // GRID:(j + 1) * width // GRID]
             for i in range(GRID) for j in range(GRID)]
    means = [float(np.nanmean(cell)) for cell in cells if np.isfinite(cell).mean() > 0.9]
    return max(means, default=float("inf"))
