"""Near-duplicate groups: exact copies, resized, recompressed or slightly cropped versions of a photo.

Pairs of images whose CNN vectors have cosine >= threshold (a FAISS range search) are duplicates;
pairs a little below it (cosine >= verify_from) are duplicates when their pixels agree too: the
correlation of small colour thumbnails, trying centre crops of up to 10% on either side, must reach
pixel_threshold (this recovers cropped and rotated copies that the CNN alone scores like two different
photos of similar things). Duplicates are joined into groups (connected components, i.e. union-find);
identical files (same content hash) always are. Each group recommends one copy to keep: the largest
resolution, then the largest file. The defaults are chosen on the edited-copy benchmark
(benchmarks/organise.py) and checked on a second set of other photos.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageEnhance
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

if TYPE_CHECKING:
    from lookalike.index import ImageIndex, ImageRecord

DEFAULT_THRESHOLD = 0.92  # see benchmarks/results/organise.md (edited-copy sets)
DEFAULT_VERIFY_FROM = 0.85
DEFAULT_PIXEL_THRESHOLD = 0.92
PIXEL_SIDE = 48
CROPS = (0.0, 0.05, 0.10)  # centre crops tried on one image of a pair (fraction of width and height)


@dataclass(frozen=True)
class DuplicateGroup:
    ids: list[int]
    paths: list[str]
    keep: str  # path of the recommended copy
    min_similarity: float  # the weakest link that joined the group

    def to_dict(self) -> dict[str, Any]:
        return {"keep": self.keep, "paths": self.paths, "ids": self.ids,
                "min_similarity": round(self.min_similarity, 4)}


def similar_pairs(vectors: npt.NDArray[np.float32], threshold: float) -> tuple[npt.NDArray[np.int64], ...]:
    """(rows a, rows b, cosine) for every pair a < b with cosine >= threshold (exact FAISS range search)."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity between -1 and 1, not {threshold}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    search = faiss.IndexFlatIP(vectors.shape[1])
    search.add(vectors)
    limits, scores, neighbours = search.range_search(vectors, float(threshold) - 1e-6)
    rows = np.repeat(np.arange(len(vectors), dtype=np.int64), np.diff(limits.astype(np.int64)))
    keep = rows < neighbours
    return rows[keep], neighbours[keep].astype(np.int64), scores[keep]


def group_rows(count: int, first: npt.NDArray[np.int64], second: npt.NDArray[np.int64]) -> list[list[int]]:
    """Connected components of the pair graph with more than one member, as lists of row numbers."""
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for row, label in enumerate(component.tolist()):
        members.setdefault(label, []).append(row)
    return [rows for rows in members.values() if len(rows) > 1]


def recommended_copy(records: Iterable[ImageRecord]) -> ImageRecord:
    """The copy to keep: most pixels, then the biggest file, then the shortest path."""
    return max(records, key=lambda r: (r.width * r.height, r.size, -len(r.path)))


def find_duplicates(index: ImageIndex, threshold: float = DEFAULT_THRESHOLD,
                    verify_from: float | None = DEFAULT_VERIFY_FROM,
                    pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD) -> list[DuplicateGroup]:
    """Groups of near-identical images in an index, biggest group first (verify_from=None: CNN only)."""
    for name, value in (("threshold", threshold), ("verify_from", verify_from), ("pixel_threshold", pixel_threshold)):
        if value is not None and not -1.0 <= value <= 1.0:
            raise ValueError(f"{name} is a similarity between -1 and 1, not {value}")
    ids, vectors = index.vectors()
    if len(ids) < 2:
        return []
    records = {record.id: record for record in index.records()}
    low = threshold if verify_from is None else min(verify_from, threshold)
    first, second, scores = similar_pairs(vectors, low)
    if low < threshold:
        paths = [records[int(i)].path for i in ids]
        keep = [score >= threshold or pixel_correlation(paths[a], paths[b]) >= pixel_threshold
                for a, b, score in zip(first.tolist(), second.tolist(), scores.tolist(), strict=True)]
        first, second, scores = first[keep], second[keep], scores[keep]
    by_hash: dict[str, list[int]] = {}
    for row, image_id in enumerate(ids.tolist()):
        by_hash.setdefault(records[image_id].content_hash, []).append(row)
    same = [(rows[0], other) for rows in by_hash.values() for other in rows[1:]]
    if same:
        first = np.concatenate([first, [a for a, _ in same]]).astype(np.int64)
        second = np.concatenate([second, [b for _, b in same]]).astype(np.int64)
        scores = np.concatenate([scores, np.ones(len(same), dtype=np.float32)])
    weakest = _weakest_link(first, second, scores)
    groups = []
    for rows in group_rows(len(ids), first, second):
        members = [records[int(ids[r])] for r in rows]
        members.sort(key=lambda r: r.path)
        groups.append(DuplicateGroup([r.id for r in members], [r.path for r in members],
                                     recommended_copy(members).path, min(weakest.get(r, 1.0) for r in rows)))
    return sorted(groups, key=lambda g: (-len(g.ids), g.keep))


def _weakest_link(first: npt.NDArray[np.int64], second: npt.NDArray[np.int64],
                  scores: npt.NDArray[np.float32]) -> dict[int, float]:
    """Per row, the best similarity that joined it to its group (the group's minimum is its weakest link)."""
    best: dict[int, float] = {}
    for a, b, score in zip(first.tolist(), second.tolist(), scores.tolist(), strict=True):
        best[a] = max(best.get(a, -1.0), score)
        best[b] = max(best.get(b, -1.0), score)
    return best


_SMALL_CACHE: dict[str, Image.Image | None] = {}


def pixel_correlation(first: str, second: str) -> float:
    """Best correlation of the two images as small colour thumbnails (brightness and contrast removed),
    over centre crops of up to 10% of either image: high for crops, resizes, recompressions, small
    rotations and brightness changes of one photo; -1 when either cannot be read."""
    images = [_small(first), _small(second)]
    if images[0] is None or images[1] is None:
        return -1.0
    best = -1.0
    for crop in CROPS:
        for cropped, other in ((0, 1), (1, 0)):
            a, b = _thumbnail(images[cropped], crop), _thumbnail(images[other], 0.0)
            best = max(best, float((a * b).sum()))
    return best


def _small(path: str) -> Image.Image | None:
    from lookalike.images import ImageError, load_image

    if path not in _SMALL_CACHE:
        if len(_SMALL_CACHE) > 4096:
            _SMALL_CACHE.clear()
        try:
            _SMALL_CACHE[path] = load_image(path, target_side=4 * PIXEL_SIDE).pixels
        except ImageError:
            _SMALL_CACHE[path] = None
    return _SMALL_CACHE[path]


def _thumbnail(image: Image.Image, crop: float) -> npt.NDArray[np.float32]:
    dx, dy = int(image.width * crop / 2), int(image.height * crop / 2)
    box = (dx, dy, image.width - dx, image.height - dy)
    pixels = np.asarray(image.resize((PIXEL_SIDE, PIXEL_SIDE), Image.Resampling.BILINEAR, box=box), np.float32)
    pixels = pixels - pixels.mean()
    return pixels / (np.linalg.norm(pixels) + 1e-6)


# --- the edited-copy evaluation set -----------------------------------------------------------
def _resize(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.LANCZOS)


def _crop(fraction: float) -> Callable[[Image.Image], Image.Image]:
    def crop(image: Image.Image) -> Image.Image:
        dx, dy = int(image.width * fraction / 2), int(image.height * fraction / 2)
        return image.crop((dx, dy, image.width - dx, image.height - dy))

    return crop


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "copy": lambda image: image,
    "resize50": _resize,
    "jpeg30": lambda image: image,  # the edit is the save quality (see make_edited_copy)
    "crop5": _crop(0.05),
    "crop10": _crop(0.10),
    "rotate3": lambda image: image.rotate(3, resample=Image.Resampling.BICUBIC, expand=False, fillcolor="white"),
    "brighter": lambda image: ImageEnhance.Brightness(image).enhance(1.2),
}


def make_edited_copy(source: str | os.PathLike[str], target: str | os.PathLike[str], edit: str) -> Path:
    """Write an edited version of a photo (one of EDITS); 'copy' is byte-identical."""
    if edit not in EDITS:
        raise ValueError(f"unknown edit {edit!r}; choose from {', '.join(EDITS)}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if edit == "copy":
        target.write_bytes(Path(source).read_bytes())
        return target
    with Image.open(source) as image:
        edited = EDITS[edit](image.convert("RGB"))
    edited.save(target, format="JPEG", quality=30 if edit == "jpeg30" else 90)
    return target


def pair_precision_recall(groups: Iterable[Iterable[str]], true_pairs: Iterable[tuple[str, str]]
                          ) -> tuple[float, float, int, int]:
    """Precision and recall over pairs: a found pair is two paths in one group. Also (found, true) counts."""
    found = set()
    for group in groups:
        members = sorted(group)
        found |= {(a, b) for n, a in enumerate(members) for b in members[n + 1:]}
    truth = {tuple(sorted(pair)) for pair in true_pairs}
    correct = len(found & truth)
    precision = correct / len(found) if found else 1.0
    recall = correct / len(truth) if truth else 1.0
    return precision, recall, len(found), len(truth)
