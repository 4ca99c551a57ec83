"""Pair sets: balanced same/different image pairs for one attribute of a labelled folder.

The images are split first (per attribute value, so every value keeps images on both sides) and
pairs are then drawn inside each side: no image of an evaluation pair appears in any training pair.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders import Matrix
from lookalike.errors import RequestError
from lookalike.evaluation import read_labels

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

DEFAULT_PAIRS = 5692  # the size of the original study's pair set
DEFAULT_EVAL_FRACTION = 0.3
Positions = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Pairs:
    """Pairs of positions into a PairSet's images; `same` is 1 when both share the attribute value."""

    first: Positions
    second: Positions
    same: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.same)

    @property
    def positives(self) -> int:
        return int(self.same.sum())

    def images(self) -> set[int]:
        return set(self.first.tolist()) | set(self.second.tolist())


@dataclass(frozen=True)
class TrainingData:
    """What a learned similarity sees: the training images with their values, and the training pairs
    (positions into those images)."""

    image_vectors: Matrix
    image_values: npt.NDArray[np.str_]
    first_image: Positions
    second_image: Positions
    same: npt.NDArray[np.int8]
    seed: int = 0

    @property
    def first(self) -> Matrix:
        return self.image_vectors[self.first_image]

    @property
    def second(self) -> Matrix:
        return self.image_vectors[self.second_image]


@dataclass(frozen=True)
class PairSet:
    """Balanced pairs for one attribute, split into image-disjoint train and eval pairs."""

    attribute: str
    dataset: str
    paths: list[str]
    values: npt.NDArray[np.str_]
    vectors: Matrix
    in_train: npt.NDArray[np.bool_]  # per image: on the training side of the split
    train: Pairs
    eval: Pairs
    seed: int

    @classmethod
    def build(cls, dataset: str | os.PathLike[str], attribute: str, index: ImageIndex, size: int = DEFAULT_PAIRS,
              eval_fraction: float = DEFAULT_EVAL_FRACTION, seed: int = 0, split: str | None = None) -> PairSet:
        """Pairs from `dataset/labels.csv` (columns `path`, `attribute`), vectors from `index`.

        `split` keeps only the rows of that value of the labels' `split` column (e.g. "train").
        """
        rows = read_labels(dataset, attribute)
        if split is not None:
            rows = [row for row in rows if row.split == split]
            if not rows:
                raise RequestError(f"no images with split {split!r} in {dataset}/labels.csv")
        if not rows:
            raise RequestError(f"no image in {dataset}/labels.csv has a value for {attribute!r}")
        paths = [os.path.abspath(row.path) for row in rows]
        values = np.array([row.label for row in rows])
        _check_values(values, attribute)
        vectors = _vectors_for(index, paths, dataset)
        rng = np.random.default_rng(seed)
        in_train = _split_images(values, eval_fraction, rng)
        eval_size = int(round(size * eval_fraction))
        train = _sample_pairs(values, np.flatnonzero(in_train), size - eval_size, rng, attribute, "training")
        held_out = _sample_pairs(values, np.flatnonzero(~in_train), eval_size, rng, attribute, "evaluation")
        return cls(attribute, os.path.abspath(dataset), paths, values, vectors, in_train, train, held_out, seed)

    def vectors_of(self, pairs: Pairs) -> tuple[Matrix, Matrix]:
        return self.vectors[pairs.first], self.vectors[pairs.second]

    def training_data(self) -> TrainingData:
        train_images = np.flatnonzero(self.in_train)
        position = np.full(len(self.paths), -1)
        position[train_images] = np.arange(len(train_images))
        return TrainingData(self.vectors[train_images], self.values[train_images], position[self.train.first],
                            position[self.train.second], self.train.same, self.seed)

    def describe(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute, "dataset": self.dataset, "seed": self.seed,
            "images": len(self.paths), "train_images": int(self.in_train.sum()),
            "eval_images": int((~self.in_train).sum()),
            "train_pairs": len(self.train), "train_positives": self.train.positives,
            "eval_pairs": len(self.eval), "eval_positives": self.eval.positives,
            "values": sorted(set(self.values.tolist())),
            "image_disjoint": not (self.train.images() & self.eval.images()),
        }


def _check_values(values: npt.NDArray[np.str_], attribute: str) -> None:
    names, counts = np.unique(values, return_counts=True)
    single = names[counts == 1]
    if len(single):
        raise RequestError(f"{attribute!r} value(s) with a single image cannot form a similar pair: "
                         f"{', '.join(map(str, single[:10]))}; label more images or drop them from labels.csv")
    if len(names) < 2:
        raise RequestError(f"{attribute!r} has only one value ({names[0]}): no dissimilar pairs are possible")


def _vectors_for(index: ImageIndex, paths: list[str], dataset: str | os.PathLike[str]) -> Matrix:
    ids_by_path = index.ids_by_path()
    missing = [path for path in paths if path not in ids_by_path]
    if missing:
        shown = ", ".join(os.path.relpath(path, os.path.abspath(dataset)) for path in missing[:5])
        raise RequestError(f"{len(missing)} image(s) listed in {Path(dataset) / 'labels.csv'} are not in the index "
                         f"{index.folder} (e.g. {shown}); run `lookalike index {dataset} --index {index.folder}`")
    return index.vectors([ids_by_path[path] for path in paths])


def _split_images(values: npt.NDArray[np.str_], eval_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Per value, about eval_fraction of its images go to evaluation (at least 2 each side when possible)."""
    if not 0.0 < eval_fraction < 1.0:
        raise RequestError(f"eval_fraction must be between 0 and 1, not {eval_fraction}")
    in_train = np.ones(len(values), dtype=bool)
    for value in np.unique(values):
        members = rng.permutation(np.flatnonzero(values == value))
        n_eval = int(round(len(members) * eval_fraction))
        if len(members) >= 4:
            n_eval = min(max(n_eval, 2), len(members) - 2)
        in_train[members[:n_eval]] = False
    return in_train


def _sample_pairs(values: npt.NDArray[np.str_], members: Positions, size: int, rng: np.random.Generator,
                  attribute: str, side: str) -> Pairs:
    """`size` distinct pairs among `members`, half with equal values, in random order and orientation."""
    n_same = size // 2
    n_different = size - n_same
    groups = [g for g in (members[values[members] == v] for v in np.unique(values[members])) if len(g) >= 2]
    available_same = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    available_different = len(members) * (len(members) - 1) // 2 - sum(
        n * (n - 1) // 2 for n in np.unique(values[members], return_counts=True)[1])
    if available_same < n_same or available_different < n_different:
        raise RequestError(
            f"asked for {size} {side} pairs ({n_same} similar, {n_different} dissimilar) on {attribute!r}, but its "
            f"{len(members)} {side} images only allow {available_same} similar and {available_different} "
            "dissimilar pairs; ask for fewer pairs or label more images")
    same = _draw(rng, n_same, available_same, lambda: _random_same(rng, groups, available_same),
                 lambda: [p for g in groups for p in itertools.combinations(g.tolist(), 2)])
    different = _draw(rng, n_different, available_different, lambda: _random_different(rng, members, values),
                      lambda: [(i, j) for i, j in itertools.combinations(members.tolist(), 2)
                               if values[i] != values[j]])
    pairs = np.array(same + different, dtype=np.int64).reshape(-1, 2)
    labels = np.array([1] * len(same) + [0] * len(different), dtype=np.int8)
    order = rng.permutation(len(labels))
    flip = rng.random(len(labels)) < 0.5
    pairs = np.where(flip[:, None], pairs[:, ::-1], pairs)[order]
    return Pairs(pairs[:, 0], pairs[:, 1], labels[order])


def _draw(rng: np.random.Generator, wanted: int, available: int, one: Any, everything: Any) -> list[tuple[int, int]]:
    """Distinct pairs: rejection sampling when they are plenty, a sample of all of them otherwise."""
    if wanted * 4 > available:
        pool = everything()
        return [tuple(pool[i]) for i in rng.choice(len(pool), size=wanted, replace=False)]
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < wanted:
        i, j = one()
        chosen.add((min(i, j), max(i, j)))
    return sorted(chosen)


def _random_same(rng: np.random.Generator, groups: list[Positions], total: int) -> tuple[int, int]:
    weights = np.array([len(g) * (len(g) - 1) / 2 for g in groups]) / total
    group = groups[rng.choice(len(groups), p=weights)]
    i, j = rng.choice(group, size=2, replace=False)
    return int(i), int(j)


def _random_different(rng: np.random.Generator, members: Positions, values: npt.NDArray[np.str_]) -> tuple[int, int]:
    while True:
        i, j = rng.choice(members, size=2, replace=False)
        if values[i] != values[j]:
            return int(i), int(j)
