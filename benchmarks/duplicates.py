"""Duplicates a user can delete by: what `find_duplicates` offers for deletion on whole collections, judged by
an independent check, and how many edited copies it finds.

    flock /tmp/lookalike-bench.lock python -m benchmarks.duplicates

- Whole collections (clothing, 3,781 photos; Corel-1K, 1,000): every photo offered for deletion is judged
  against the photo kept in its place by a check that shares nothing with the product's (SIFT keypoints, a full
  homography, strict: >= JUDGE_INLIERS agreeing matches); a photo the judge does not call a copy is a distinct
  photo offered for deletion. The candidate pairs the product rejected are judged too (copies it missed).
- Edited copies: the two sets of benchmarks/organise.py (200 clothing photos with one edited copy each among 800
  others; seed 0 chose the thresholds, seed 1 checks them) and a harder set of edits the defaults were not tuned
  on (crop 15%, rotate 5 degrees, contrast +30%, darker 20%, resize to a third).

Indexes are built once in benchmarks/out/ (git-ignored) and reused. Writes section "trustworthy-duplicates".
"""

from __future__ import annotations

import json
import os
import random
import time
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from benchmarks import collect
from benchmarks.organise import OUT, build_duplicate_set, indexed
from lookalike.copy_check import DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_INLIERS, GRID, MAX_CELL_DIFFERENCE
from lookalike.evaluation import read_labels
from lookalike.index import ImageIndex
from lookalike.organise.duplicates import (
    DEFAULT_LOOK_ALIKE_THRESHOLD,
    DEFAULT_THRESHOLD,
    find_duplicates,
    pair_precision_recall,
    similar_pairs,
)
from lookalike.settings import datasets_dir

RESULTS = OUT / "duplicates.json"
JUDGE_SIDE = 640
JUDGE_INLIERS = 50  # the judge: edited copies 166-1,053 agreeing matches, different garments 0-4
JUDGE_REJECTED_FROM = 0.85  # rejected candidates judged from this cosine (edited copies score >= 0.84)


# --- the independent judge: SIFT + homography ----------------------------------------------------
@lru_cache(maxsize=1024)
def _sift(path: str):
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"))
    factor = JUDGE_SIDE / max(grey.shape)
    size = (round(grey.shape[1] * factor), round(grey.shape[0] * factor))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    points, descriptors = cv2.SIFT_create(nfeatures=1000).detectAndCompute(grey, None)
    return np.array([p.pt for p in points], np.float32).reshape(-1, 2), descriptors


def judge_inliers(first: str, second: str) -> int:
    """Matches (ratio test 0.75) agreeing with one homography (RANSAC, 4 px at JUDGE_SIDE)."""
    (a, da), (b, db) = _sift(first), _sift(second)
    if da is None or db is None or len(a) < 4 or len(b) < 4:
        return 0
    good = [m[0] for m in cv2.BFMatcher(cv2.NORM_L2).knnMatch(db, da, k=2)
            if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    if len(good) < 4:
        return len(good)
    _, mask = cv2.findHomography(b[[m.queryIdx for m in good]], a[[m.trainIdx for m in good]], cv2.RANSAC, 4.0)
    return 0 if mask is None else int(mask.sum())


# --- whole collections --------------------------------------------------------------------------
def collection_part(name: str) -> dict:
    with indexed(name, datasets_dir() / name) as index:
        started = time.perf_counter()
        found = find_duplicates(index)
        seconds = time.perf_counter() - started
        ids, vectors = index.vectors()
        paths = {r.id: r.path for r in index.records()}
    offered = [(g.keep, path) for g in found.groups for path in g.could_go]
    judged = [(keep, path, judge_inliers(keep, path)) for keep, path in offered]
    distinct = [(keep, path, n) for keep, path, n in judged if n < JUDGE_INLIERS]
    together = {tuple(sorted(pair)) for pair in offered}
    first, second, scores = similar_pairs(vectors, JUDGE_REJECTED_FROM)
    candidates = [(paths[int(ids[a])], paths[int(ids[b])], float(s))
                  for a, b, s in zip(first.tolist(), second.tolist(), scores.tolist(), strict=True)]
    rejected = [(a, b, s) for a, b, s in candidates if tuple(sorted((a, b))) not in together]
    placed = {p for g in found.groups for p in g.paths}
    missed = [(a, b, s, n) for a, b, s in rejected if not (a in placed and b in placed)
              for n in [judge_inliers(a, b)] if n >= JUDGE_INLIERS]
    _contact_sheet([(a, b, f"offered: judge {n}") for a, b, n in judged[:6]]
                   + [(a, b, f"missed? judge {n}, cosine {s:.3f}") for a, b, s, n in missed[:6]],
                   OUT / f"dups-{name}.png")
    return {"images": len(ids), "seconds": seconds, "groups": len(found.groups), "could_go": found.could_go,
            "look_alike_groups": len(found.look_alikes),
            "look_alike_photos": sum(len(g.paths) for g in found.look_alikes),
            "checked_pairs": found.checked_pairs, "offered": judged, "distinct_offered": distinct,
            "judged_rejected": len(rejected), "missed": missed,
            "largest_look_alike": max((len(g.paths) for g in found.look_alikes), default=0)}


def _contact_sheet(pairs: list[tuple[str, str, str]], target: Path) -> None:
    """The pairs side by side, for a person to look at (benchmarks/out, not committed)."""
    if not pairs:
        return
    sheet = Image.new("RGB", (520, 280 * len(pairs)), "white")
    for row, (a, b, caption) in enumerate(pairs):
        for column, path in enumerate((a, b)):
            with Image.open(path) as image:
                image = image.convert("RGB")
                image.thumbnail((250, 250))
                sheet.paste(image, (column * 260, row * 280 + 25))
        ImageDraw.Draw(sheet).text((5, row * 280 + 5), f"{caption}: {Path(a).name[:12]} / {Path(b).name[:12]}",
                                   fill="black")
    sheet.save(target)


# --- edited copies ---------------------------------------------------------------------------------
def _score(index: ImageIndex, pairs: list[tuple[str, str]]) -> dict:
    started = time.perf_counter()
    found = find_duplicates(index)
    seconds = time.perf_counter() - started
    groups = [g.paths for g in found.groups]
    precision, recall, found_pairs, true = pair_precision_recall(groups, pairs)
    truth = {tuple(sorted(pair)) for pair in pairs}
    together = {(a, b) for g in groups for a in g for b in g if a < b}
    false = sorted((Path(a).name, Path(b).name) for a, b in together - truth)
    missed: dict[str, int] = {}
    for a, b in truth - together:
        edit = Path(max(a, b, key=len)).stem.split("-", 1)[1]
        missed[edit] = missed.get(edit, 0) + 1
    return {"precision": precision, "recall": recall, "found_pairs": found_pairs, "true_pairs": true,
            "could_go": found.could_go, "seconds": seconds, "images": len(index), "missed_by_edit": missed,
            "false_pairs": false}


HARD_EDITS = {
    "crop15": lambda im: im.crop((int(im.width * 0.075), int(im.height * 0.075), im.width - int(im.width * 0.075),
                                  im.height - int(im.height * 0.075))),
    "rotate5": lambda im: im.rotate(5, resample=Image.Resampling.BICUBIC, expand=False, fillcolor="white"),
    "contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.3),
    "darker": lambda im: ImageEnhance.Brightness(im).enhance(0.8),
    "resize33": lambda im: im.resize((max(1, im.width // 3), max(1, im.height // 3)), Image.Resampling.LANCZOS),
}


def build_hard_set(edited: int = 200, distinct: int = 300, seed: int = 2) -> tuple[Path, list[tuple[str, str]]]:
    """`edited` clothing photos each with one edit of HARD_EDITS (in turn) among `distinct` other photos."""
    folder = OUT / "duplicates-hard-set"
    truth_file = folder / "pairs.json"
    if truth_file.exists():
        return folder, [tuple(p) for p in json.loads(truth_file.read_text())]
    photos = sorted(i.path for i in read_labels(datasets_dir() / "clothing"))
    pairs = []
    for n, source in enumerate(random.Random(seed).sample(photos, edited + distinct)):
        (folder / "photos").mkdir(parents=True, exist_ok=True)
        original = folder / "photos" / f"{n:04d}.jpg"
        original.write_bytes(Path(source).read_bytes())
        if n < edited:
            edit = list(HARD_EDITS)[n % len(HARD_EDITS)]
            with Image.open(source) as image:
                HARD_EDITS[edit](image.convert("RGB")).save(folder / "photos" / f"{n:04d}-{edit}.jpg", quality=85)
            pairs.append((str(original), str(folder / "photos" / f"{n:04d}-{edit}.jpg")))
    truth_file.write_text(json.dumps(pairs))
    return folder, pairs


def edited_part() -> dict:
    result = {}
    for key, (folder, pairs) in (("tuning", build_duplicate_set()), ("held_out", build_duplicate_set(seed=1)),
                                 ("hard", build_hard_set())):
        with indexed({"tuning": "duplicates", "held_out": "duplicates-1", "hard": "duplicates-hard"}[key],
                     folder / "photos") as index:
            result[key] = _score(index, pairs)
    return result


# --- the section ------------------------------------------------------------------------------------
def section(results: dict) -> str:
    rule = (f"candidates: CNN cosine >= {DEFAULT_THRESHOLD}; a copy: >= {DEFAULT_MIN_INLIERS} ORB matches agreeing "
            f"on one rotation-scale-shift (RANSAC), aligned pixels correlating >= {DEFAULT_MIN_AGREEMENT} and no "
            f"cell of a {GRID}x{GRID} grid differing by more than {MAX_CELL_DIFFERENCE}")
    lines = ["## Trustworthy answers: duplicates (benchmarks/duplicates.py)", "",
             collect.machine_line() + " Other helpers' work was running on the same 2 cores.", "",
             f"`lookalike duplicates` with its defaults ({rule}; look-alike groups from cosine "
             f">= {DEFAULT_LOOK_ALIKE_THRESHOLD}). Groups do not chain: each photo that could go was checked "
             "against the kept photo itself. Model: efficientnet-lite0, the `lookalike index` defaults.", "",
             "### Whole collections: what is offered for deletion", "",
             f"Judge: SIFT keypoints at {JUDGE_SIDE} px, ratio test 0.75, a full homography by RANSAC (4 px); a "
             f"photo offered for deletion is a copy of the kept one when >= {JUDGE_INLIERS} matches agree. The "
             f"judge also looked at every candidate pair with cosine >= {JUDGE_REJECTED_FROM} the product did not "
             "group (copies it may have missed).", "",
             "| collection | images | groups of copies | images that could go | of them distinct (judge) | "
             "look-alike groups (photos) | pairs checked | rejected pairs the judge scores >= 50 | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("clothing", "corel1k"):
        if name in results:
            c = results[name]
            lines.append(f"| {name} | {c['images']} | {c['groups']} | {c['could_go']} | "
                         f"**{len(c['distinct_offered'])}** | {c['look_alike_groups']} ({c['look_alike_photos']}) | "
                         f"{c['checked_pairs']} | {len(c['missed'])} of {c['judged_rejected']} | "
                         f"{c['seconds']:.0f} |")
    for name in ("clothing", "corel1k"):
        if name in results:
            c = results[name]
            offered = ", ".join(f"{Path(b).name[:8]} for {Path(a).name[:8]} (judge {n})" for a, b, n in c["offered"])
            lines += ["", f"{name}: offered for deletion: {offered or 'nothing'}."]
            if c["missed"]:
                lines.append(f"{name}: rejected pairs the judge scores >= {JUDGE_INLIERS}: " + ", ".join(
                    f"{Path(a).name[:8]}/{Path(b).name[:8]} (judge {n}, cosine {s:.3f})" for a, b, s, n in c["missed"]))
    lines += ["", "The judge is strict about garments (different ones score 0-4) but cannot tell two frames of one "
              "scene from a copy: it scores Corel 327/33 and 349/355, two frames each with the elephants moved "
              "(looked at by eye), 370 and 381. They were offered before the grid check (run of 12:19 UTC) and are "
              "refused now. So every photo offered was also looked at by eye: clothing b59e4d4a/e6a8b33f (a dress) "
              "and 6075b4a5/637a56e4 (shorts) are each one photo stored twice, Corel 458/464 is one photo shifted a "
              "few pixels. Of the rejected pairs the judge scores >= 50, the 12 looked at by eye (6 per collection) "
              "are re-shots of one garment or scene, or different jeans on one textured floor; none is a copy.",
              "", "Before this change (issue 23, the same judge): on clothing 21 groups, \"60 images could go\", 59 of "
              "them different garments (12 different jeans on one wall chained into one group, 12 different "
              "T-shirts into another).", ""]
    if "edited" in results:
        e = results["edited"]
        lines += ["### Edited copies", "",
                  "A found pair is two images in one group of copies. tuning and held-out: the sets of "
                  "benchmarks/organise.py (200 clothing photos each with one edited copy, edits in turn: exact copy, "
                  "resize 50%, JPEG quality 30, crop 5%, crop 10%, rotate 3 degrees, brightness +20%, among 800 "
                  "other clothing photos); the tuning set chose the thresholds. hard: 200 other photos with edits "
                  "the thresholds never saw (crop 15%, rotate 5 degrees, contrast +30%, brightness -20%, resize to "
                  "a third) among 300 others.", "",
                  "| set | images | precision | recall | pairs found | true pairs | missed, by edit | false pairs | "
                  "seconds |", "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
        for key in ("tuning", "held_out", "hard"):
            r = e[key]
            false = ", ".join(f"{a}/{b}" for a, b in r["false_pairs"]) or "none"
            lines.append(f"| {key.replace('_', '-')} | {r['images']} | {r['precision']:.4f} | **{r['recall']:.4f}** "
                         f"| {r['found_pairs']} | {r['true_pairs']} | {r['missed_by_edit'] or 'none'} | {false} | "
                         f"{r['seconds']:.0f} |")
        lines += ["", "The held-out false pair 0320/0718 is the same photo stored twice in the clothing dataset "
                  "(looked at by eye): a true copy the set does not know about.", ""]
    return "\n".join(lines)


PARTS = {"clothing": lambda: collection_part("clothing"), "corel1k": lambda: collection_part("corel1k"),
         "edited": edited_part}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for part, measure in PARTS.items():
        started = time.perf_counter()
        results[part] = measure() | {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(f"{part}: {time.perf_counter() - started:.0f} s", json.dumps(results[part], default=str)[:1500])
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(collect.write_section("trustworthy-duplicates", section(results)))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
