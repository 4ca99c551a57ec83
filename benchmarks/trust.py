"""Answers a user can act on (issue 23): the defaults against plain cosine where users meet them, readable
similarities, and the low-confidence flag both ways.

1. Defaults vs plain cosine of the same network, with queries the index does not hold (new photos, embedded at
   query time through `evaluate_index`, which runs the search pipeline's own code), on the whole gallery and with
   each query's class cut to r = 1 and 3 gallery images; on Corel-1K, clothing (test against train) and two
   instance sets built by lookalike.instance_set (each object's gallery: the original and 2 strong edits; queries:
   2 other strong edits, every other photo a distractor): "instance r=3" the whole set, "r=1" one view kept.
   Three rows per set: the defaults (DBA + query expansion + the guard), the same index with `expand="none"`
   (DBA + the guard) and plain cosine (an index with the same PCA and no DBA, `expand="none"`).
2. Same photo: the similarity of exact copies and lightly edited copies (resized, re-encoded, cropped 5-10%,
   rotated 3 degrees, brighter) of 100 clothing photos, and how often a new clothing photo's first match (a
   different photo) reaches SAME_PHOTO.
3. Low confidence: out-of-domain photos (Corel-1K in the clothing index, clothing test photos in the Corel index)
   flagged, and in-domain new photos flagged, through `ImageIndex.search`.

    flock /tmp/lookalike-bench.lock .venv/bin/python -m benchmarks.trust [--speed]

4. (--speed) What the guard and the readable answer cost per search, beside plain cosine.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import collect
from lookalike import ImageIndex
from lookalike.confidence import NEAR_COPY, SAME_PHOTO
from lookalike.evaluation import evaluate_index, read_labels
from lookalike.instance_set import make_instance_set
from lookalike.organise.duplicates import EDITS, make_edited_copy
from lookalike.settings import cache_dir, datasets_dir


def instance_sets(data: Path) -> dict[str, Path]:
    folder = cache_dir() / "bench" / "instance-sets"
    made = {"instance (clothing)": (data / "clothing", folder / "clothing", 300, 1),
            "instance (Corel-1K)": (data / "corel1k", folder / "corel1k", 150, 2)}
    for source, target, objects, seed in made.values():
        if not (target / "labels.csv").exists():
            make_instance_set(source, target, objects=objects, views=3, queries=2, seed=seed)
    return {name: target for name, (_, target, _, _) in made.items()}


def gallery_of(dataset: Path, split: str) -> list[Path]:
    return [image.path for image in read_labels(dataset) if image.split == split]


def indexes(name: str, dataset: Path, split: str, work: Path) -> tuple[ImageIndex, ImageIndex]:
    """(defaults, plain): the plain index holds the gallery with the default PCA and no DBA; the defaults index is
    a copy of it with the default DBA built, so both search the very same vectors."""
    slug = "".join(c if c.isalnum() else "-" for c in name)
    plain_folder, default_folder = work / f"{slug}-plain", work / f"{slug}-default"
    with ImageIndex.create(plain_folder, dba=0) as plain:
        plain.add_files(gallery_of(dataset, split))
    shutil.copytree(plain_folder, default_folder)
    with ImageIndex.open(default_folder) as default:
        default.augment()
    return ImageIndex.open(default_folder), ImageIndex.open(plain_folder)


def quality_rows(name: str, dataset: Path, default: ImageIndex, plain: ImageIndex, cuts: list[int | None]) -> list[str]:
    rows = []
    settings = [("defaults (DBA + aQE + guard)", default, None), ("same index, expand none", default, "none"),
                ("plain cosine", plain, "none")]
    for setting, index, expand in settings:
        cells = []
        for matches in cuts:
            scores = evaluate_index(index, dataset, expand=expand, matches=matches)
            cells.append(f"{scores.mean_average_precision:.3f} / {scores.top_1:.3f}")
        rows.append(f"| {name} | {setting} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def same_photo_rows(index: ImageIndex, dataset: Path, work: Path) -> list[str]:
    photos = random.Random(0).sample(gallery_of(dataset, "train"), 100)
    rows = []
    for edit in EDITS:
        similarities, marked = [], []
        for number, photo in enumerate(photos):
            copy = make_edited_copy(photo, work / "edits" / edit / f"{number}.jpg", edit)
            match = next((m for m in index.search(copy, k=5).matches if m.path == str(Path(photo).resolve())), None)
            similarities.append(match.similarity if match is not None else 0.0)
            marked.append(match is not None and match.same_photo)
        values = np.array(similarities)
        rows.append(f"| {edit} | {values.min():.4f} | {np.median(values):.4f} | {np.mean(marked):.0%} |")
    firsts = [index.search(path, k=1).matches[0] for path in gallery_of(dataset, "test")]
    values = np.array([match.similarity for match in firsts])
    marked = sum(match.same_photo for match in firsts)
    rows.append(f"| a different photo: the first match of each of {len(firsts)} clothing test photos (min / median / "
                f"max {values.max():.4f}) | {values.min():.4f} | {np.median(values):.4f} | {marked} photos |")
    return rows


def flagged(index: ImageIndex, photos: list[Path]) -> float:
    return float(np.mean([index.search(photo, k=5).low_confidence for photo in photos]))


def confidence_rows(clothing: ImageIndex, corel: ImageIndex, data: Path) -> list[str]:
    corel_photos = [image.path for image in read_labels(data / "corel1k")]
    clothing_test = gallery_of(data / "clothing", "test")
    corel_queries = gallery_of(data / "corel1k", "query")
    cases = [("clothing (train)", clothing, f"Corel-1K, all {len(corel_photos)} (out of domain)", corel_photos),
             ("clothing (train)", clothing, f"clothing test, {len(clothing_test)} (in domain)", clothing_test),
             ("Corel-1K (gallery)", corel, f"clothing test, {len(clothing_test)} (out of domain)", clothing_test),
             ("Corel-1K (gallery)", corel, f"Corel-1K queries, {len(corel_queries)} (in domain)", corel_queries)]
    return [f"| {name} | {what} | {flagged(index, photos):.1%} |" for name, index, what, photos in cases]


def main() -> None:
    data = datasets_dir()
    if not (data / "clothing").exists():
        sys.exit(f"no datasets at {data} (set LOOKALIKE_DATASETS)")
    sets = {"Corel-1K": (data / "corel1k", "gallery"), "clothing": (data / "clothing", "train")}
    sets |= {name: (folder, "gallery") for name, folder in instance_sets(data).items()}
    lines = ["## Trustworthy answers: defaults, similarity, confidence (benchmarks/trust.py)", "",
             collect.machine_line(),
             "", "Queries are new photos (not in the index, embedded at query time). Each cell: mAP / top-1. "
             "r = 1 and 3: each query's class cut to r gallery images (DBA rebuilt on the cut gallery). Instance sets: "
             "each object's gallery holds its original and 2 strong edits (crop to 50-70%, rotation 8-20 degrees, "
             "perspective, colour), queries are 2 other strong edits, every other photo of the set is a distractor.",
             "", "| set | setting | whole gallery | r = 1 | r = 3 |", "|---|---|---|---|---|"]
    opened = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name, (dataset, split) in sets.items():
            default, plain = indexes(name, dataset, split, work)
            opened[name] = default
            instance = name.startswith("instance")
            cuts: list[int | None] = [None, 1] if instance else [None, 1, 3]
            rows = quality_rows(name, dataset, default, plain, cuts)
            lines += [row + " (the whole set) |" if instance else row for row in rows]  # instance: r = 3 already
            if not instance:
                plain.close()
        lines += ["", f"Same photo: the similarity of a copy to its original and whether the search marks it "
                  f"`same_photo` (similarity >= {SAME_PHOTO}, or >= {NEAR_COPY} with the keypoint check), clothing "
                  "train index with the defaults.", "",
                  "| copy | min | median | marked same photo |", "|---|---|---|---|"]
        lines += same_photo_rows(opened["clothing"], data / "clothing", work)
        lines += ["", "Low confidence through `ImageIndex.search` (the index's own calibrated floor):", "",
                  "| index | queries | flagged |", "|---|---|---|"]
        lines += confidence_rows(opened["clothing"], opened["Corel-1K"], data)
        for index in opened.values():
            index.close()
    collect.write_section("trust", "\n".join(lines))
    print("\n".join(lines))




def search_ms(index: ImageIndex, queries: np.ndarray, **options: object) -> float:
    """Median milliseconds of `ImageIndex.search(vector=q)`, the call a user makes, over `queries`."""
    times = []
    for query in queries:
        started = time.perf_counter()
        index.search(vector=query, k=10, **options)
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def speed() -> None:
    """What the guard and the readable answer cost per search at 3,781 clothing images (new-photo vectors: indexed
    vectors with a little noise), medians of 5 interleaved rounds of 200 searches each."""
    data = datasets_dir()
    with tempfile.TemporaryDirectory() as folder:
        default, plain = indexes("speed", data / "clothing", "train", Path(folder))
        _, vectors = plain.vectors()
        rng = np.random.default_rng(0)
        queries = vectors[rng.choice(len(vectors), 200, replace=False)]
        queries = queries + rng.normal(0, 0.01, queries.shape).astype(np.float32)
        settings = {"defaults (DBA + aQE + guard)": (default, {}), "DBA index, expand none (guard)": (default,
                    {"expand": "none"}), "plain cosine (no DBA, expand none: no guard)": (plain, {"expand": "none"})}
        for index, options in settings.values():
            search_ms(index, queries[:20], **options)  # warm
        rounds: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(5):
            for name, (index, options) in settings.items():
                rounds[name].append(search_ms(index, queries, **options))
        default.close()
        plain.close()
    lines = ["## Trustworthy answers: what they cost per search (benchmarks/trust.py --speed)", "",
             collect.machine_line(), "", "`ImageIndex.search(vector=q, k=10)` at 3,068 clothing images (train), "
             "200 new-photo vectors, median of 5 interleaved rounds (each round's median in brackets). The guard "
             "reads the first 40 candidates' vectors and their neighbour floors; every search also computes each "
             "match's similarity and the confidence judgement.", "", "| setting | ms per search |", "|---|---|"]
    lines += [f"| {name} | {np.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)}) |"
              for name, values in rounds.items()]
    collect.write_section("trust-speed", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    if "--speed" in sys.argv:
        speed()
    else:
        main()
