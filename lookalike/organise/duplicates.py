"""Duplicates a user can delete by: copies of a photo (resized, re-encoded, cropped or rotated a little,
brightened), each checked against the photo it would be deleted in favour of.

Candidate pairs are the CNN neighbours with cosine >= threshold (a FAISS range search); a candidate is a
copy only when the keypoint check (lookalike/copy_check.py) finds the two photos are one photo: many
keypoints agreeing on one small rotation-scale-shift, and the pixels agreeing once aligned. Identical files
(same content hash) always are. Groups never chain: in order of preference (the largest resolution, then
the largest file) each photo not yet placed keeps its own copies, so every photo that "could go" was
checked directly against the kept one. Photos that look alike (cosine >= look_alike_threshold) but are no
copies are reported apart, as look-alike groups, and never counted as deletable. Numbers:
benchmarks/duplicates.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageEnhance

from lookalike.copy_check import DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_INLIERS, check_copy
from lookalike.errors import RequestError

if TYPE_CHECKING:
    from lookalike.index import ImageIndex, ImageRecord

DEFAULT_THRESHOLD = 0.80  # cosine from which a pair is checked: edited copies score >= 0.84 (benchmarks/duplicates.py)
DEFAULT_LOOK_ALIKE_THRESHOLD = 0.92  # cosine from which two photos that are no copies are shown as look-alikes

Edges = dict[int, dict[int, float]]  # row -> {neighbour row: cosine}


@dataclass(frozen=True)
class DuplicateGroup:
    """A kept photo and its copies, each verified against it: every path but `keep` could go."""

    ids: list[int]
    paths: list[str]
    keep: str  # path of the recommended copy
    min_similarity: float  # the lowest cosine between the kept photo and one of its copies

    @property
    def could_go(self) -> list[str]:
        return [path for path in self.paths if path != self.keep]

    def to_dict(self) -> dict[str, Any]:
        return {"keep": self.keep, "could_go": self.could_go, "paths": self.paths, "ids": self.ids,
                "min_similarity": round(self.min_similarity, 4)}


@dataclass(frozen=True)
class LookAlikeGroup:
    """A photo and others that look like it but are different photos (failed the copy check): none could go."""

    ids: list[int]
    paths: list[str]
    photo: str  # the photo the others look like
    min_similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {"photo": self.photo, "paths": self.paths, "ids": self.ids,
                "min_similarity": round(self.min_similarity, 4)}


@dataclass(frozen=True)
class Duplicates:
    groups: list[DuplicateGroup]  # copies: deletable
    look_alikes: list[LookAlikeGroup]  # different photos that look alike: never deletable
    checked_pairs: int  # candidate pairs the copy check looked at

    @property
    def could_go(self) -> int:
        return sum(len(group.could_go) for group in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [g.to_dict() for g in self.groups], "could_go": self.could_go,
                "look_alikes": [g.to_dict() for g in self.look_alikes], "checked_pairs": self.checked_pairs}


def similar_pairs(vectors: npt.NDArray[np.float32], threshold: float) -> tuple[npt.NDArray[np.int64], ...]:
    """(rows a, rows b, cosine) for every pair a < b with cosine >= threshold (exact FAISS range search)."""
    if not -1.0 <= threshold <= 1.0:
        raise RequestError(f"threshold is a cosine similarity between -1 and 1, not {threshold}")
    import faiss  # here, not above: the CLI reads this module's defaults

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    search = faiss.IndexFlatIP(vectors.shape[1])
    search.add(vectors)
    limits, scores, neighbours = search.range_search(vectors, float(threshold) - 1e-6)
    rows = np.repeat(np.arange(len(vectors), dtype=np.int64), np.diff(limits.astype(np.int64)))
    keep = rows < neighbours
    return rows[keep], neighbours[keep].astype(np.int64), scores[keep]


def anchored_groups(order: Sequence[int], edges: Edges) -> list[tuple[int, list[int]]]:
    """Groups without chaining: in `order`, each row not yet placed takes its neighbours not yet placed;
    every member is a direct neighbour of its group's anchor (A~B and B~C never put A and C together)."""
    placed: set[int] = set()
    groups = []
    for row in order:
        if row in placed:
            continue
        members = sorted(n for n in edges.get(row, {}) if n not in placed)
        if members:
            placed |= {row, *members}
            groups.append((row, members))
    return groups


def recommended_copy(records: Iterable[ImageRecord]) -> ImageRecord:
    """The copy to keep: most pixels, then the biggest file, then the shortest path."""
    return max(records, key=_preference)


def _preference(record: ImageRecord) -> tuple[int, int, int]:
    return record.width * record.height, record.size, -len(record.path)


def find_duplicates(index: ImageIndex, threshold: float = DEFAULT_THRESHOLD,
                    min_inliers: int = DEFAULT_MIN_INLIERS, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                    look_alike_threshold: float | None = DEFAULT_LOOK_ALIKE_THRESHOLD) -> Duplicates:
    """Copies a user can delete (groups, biggest first) and, apart, look-alike groups (look_alike_threshold=None:
    none). A pair with cosine >= threshold is a copy when the keypoint check finds >= min_inliers agreeing
    matches and an aligned pixel correlation >= min_agreement."""
    for name, value in (("threshold", threshold), ("look_alike_threshold", look_alike_threshold),
                        ("min_agreement", min_agreement)):
        if value is not None and not -1.0 <= value <= 1.0:
            raise RequestError(f"{name} is a similarity between -1 and 1, not {value}")
    ids, vectors = index.vectors()
    if len(ids) < 2:
        return Duplicates([], [], 0)
    records = {record.id: record for record in index.records()}
    rows = [records[int(i)] for i in ids]
    copies, look_alikes, checked = _checked_pairs(rows, vectors, threshold, min_inliers, min_agreement,
                                                  look_alike_threshold)
    preferred = sorted(range(len(rows)), key=lambda r: _preference(rows[r]), reverse=True)
    copy_groups = anchored_groups(preferred, copies)
    groups = [_duplicate_group(rows, keep, members, copies) for keep, members in copy_groups]
    going = {row for _, members in copy_groups for row in members}  # look-alikes among the photos that stay
    look_alikes = {a: {b: s for b, s in near.items() if b not in going} for a, near in look_alikes.items()
                   if a not in going}
    most_alike = sorted(look_alikes, key=lambda r: (-len(look_alikes[r]), rows[r].path))
    alike = [_look_alike_group(rows, photo, members, look_alikes)
             for photo, members in anchored_groups(most_alike, look_alikes)]
    return Duplicates(sorted(groups, key=lambda g: (-len(g.ids), g.keep)),
                      sorted(alike, key=lambda g: (-len(g.ids), g.photo)), checked)


def _checked_pairs(rows: list[ImageRecord], vectors: npt.NDArray[np.float32], threshold: float, min_inliers: int,
                   min_agreement: float, look_alike_threshold: float | None) -> tuple[Edges, Edges, int]:
    """The copy pairs (verified, or the same file content) and the look-alike pairs, as edges both ways."""
    copies: Edges = {}
    look_alikes: Edges = {}
    by_hash: dict[str, list[int]] = {}
    for row, record in enumerate(rows):
        by_hash.setdefault(record.content_hash, []).append(row)
    for same in by_hash.values():
        for a in same:
            for b in same:
                if a != b:
                    copies.setdefault(a, {})[b] = 1.0
    low = threshold if look_alike_threshold is None else min(threshold, look_alike_threshold)
    first, second, scores = similar_pairs(vectors, low)
    checked = 0
    for a, b, score in zip(first.tolist(), second.tolist(), scores.tolist(), strict=True):
        if b in copies.get(a, {}):
            continue
        if score >= threshold:
            checked += 1
            if check_copy(rows[a].path, rows[b].path).is_copy(min_inliers, min_agreement):
                copies.setdefault(a, {})[b] = copies.setdefault(b, {})[a] = score
                continue
        if look_alike_threshold is not None and score >= look_alike_threshold:
            look_alikes.setdefault(a, {})[b] = look_alikes.setdefault(b, {})[a] = score
    return copies, look_alikes, checked


def _duplicate_group(rows: list[ImageRecord], keep: int, members: list[int], edges: Edges) -> DuplicateGroup:
    chosen = sorted([keep, *members], key=lambda r: rows[r].path)
    return DuplicateGroup([rows[r].id for r in chosen], [rows[r].path for r in chosen], rows[keep].path,
                          min(edges[keep][m] for m in members))


def _look_alike_group(rows: list[ImageRecord], photo: int, members: list[int], edges: Edges) -> LookAlikeGroup:
    chosen = sorted([photo, *members], key=lambda r: rows[r].path)
    return LookAlikeGroup([rows[r].id for r in chosen], [rows[r].path for r in chosen], rows[photo].path,
                          min(edges[photo][m] for m in members))


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
        raise RequestError(f"unknown edit {edit!r}; choose from {', '.join(EDITS)}")
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
