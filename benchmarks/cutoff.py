"""k="auto" (issue 27, item 6): how well the adaptive cut-off stops where the matches stop belonging to the query.

Against the labels: each query's relevant images are the gallery images of its label (its class on Corel-1K and
clothing, its object on the instance sets). Precision is the share of what a search returned that is relevant,
recall the share of the relevant images it returned, both averaged over the queries; beside them the mean number
returned. k="auto" against fixed k = 10, through ImageIndex.search (the pipeline every door runs), with queries that
are new photos (not in the index, embedded at query time), on the defaults (PCA + DBA + query expansion + guard: the
neighbour floors come from the augmentation's graph) and on plain cosine (no DBA: the floors come from a search of
each match's own vector). Sets as in benchmarks/trust.py.

    flock /tmp/lookalike-bench.lock .venv/bin/python -m benchmarks.cutoff
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks import collect
from benchmarks.trust import gallery_of, instance_sets
from lookalike import ImageIndex
from lookalike.cutoff import AUTO_CAP, BELONG_NEIGHBOUR
from lookalike.evaluation import read_labels
from lookalike.settings import cache_dir, datasets_dir

KS: list[int | str] = [10, "auto"]


def built(name: str, dataset: Path, split: str) -> tuple[Path, Path]:
    """(defaults, plain) index folders of a set's gallery, built once under the cache."""
    slug = "".join(c if c.isalnum() else "-" for c in name)
    work = cache_dir() / "bench" / "cutoff"
    plain, default = work / f"{slug}-plain", work / f"{slug}-default"
    if not (default / "manifest.json").exists():
        shutil.rmtree(plain, ignore_errors=True)
        shutil.rmtree(default, ignore_errors=True)
        with ImageIndex.create(plain, dba=0) as index:
            index.add_files(gallery_of(dataset, split))
        shutil.copytree(plain, default)
        with ImageIndex.open(default) as index:
            index.augment()
    return default, plain


def measure(folder: Path, dataset: Path, split: str, asked: str, k: int | str, expand: str | None) -> dict[str, float]:
    images = read_labels(dataset)
    label_of = {str(Path(image.path).resolve()): image.label for image in images if image.split == split}
    counts = Counter(label_of.values())
    queries = [image for image in images if image.split == asked]
    precision, recall, returned, seconds = [], [], [], []
    with ImageIndex.open(folder) as index:
        for query in queries:
            started = time.perf_counter()
            matches = index.search(query.path, k=k, expand=expand).matches
            seconds.append(time.perf_counter() - started)
            hits = sum(label_of.get(m.path) == query.label for m in matches)
            precision.append(hits / max(len(matches), 1))
            recall.append(hits / max(counts[query.label], 1))
            returned.append(len(matches))
    return {"precision": float(np.mean(precision)), "recall": float(np.mean(recall)),
            "returned": float(np.mean(returned)), "median_returned": float(np.median(returned)),
            "ms": float(np.median(seconds) * 1e3), "queries": len(queries),
            "relevant": float(np.mean([counts[q.label] for q in queries]))}


def main() -> None:
    data = datasets_dir()
    if not (data / "clothing").exists():
        sys.exit(f"no datasets at {data} (set LOOKALIKE_DATASETS)")
    sets = {"Corel-1K": (data / "corel1k", "gallery", "query"), "clothing": (data / "clothing", "train", "test")}
    sets |= {name: (folder, "gallery", "query") for name, folder in instance_sets(data).items()}
    lines = ["## Adaptive cut-off: k=\"auto\" against k = 10 (benchmarks/cutoff.py)", "", collect.machine_line(), "",
             f"k=\"auto\" keeps a match when the query is closer to it than it is to its {BELONG_NEIGHBOUR}th nearest "
             "indexed image, and among those only the ones before the steepest drop of their similarity curve "
             f"(lookalike/cutoff.py; at most {AUTO_CAP}, the first match always). Queries are new photos (Corel-1K: "
             "the 100 queries against the 900 gallery photos; clothing: test against train; instance sets as in "
             "benchmarks/trust.py: each object's gallery is its original and 2 strong edits, so 3 relevant images "
             "per query, among every other photo as distractors). Precision and recall of what the search returned "
             "against the labels, averaged over queries; 'returned' is the mean (median) number of matches; ms is "
             "the median time of one ImageIndex.search, embedding included.", "",
             "| set | relevant per query | index | k | precision | recall | returned (median) | ms |",
             "|---|---|---|---|---|---|---|---|"]
    for name, (dataset, split, asked) in sets.items():
        default, plain = built(name, dataset, split)
        for setting, folder, expand in (("defaults", default, None), ("plain cosine", plain, "none")):
            for k in KS:
                row = measure(folder, dataset, split, asked, k, expand)
                lines.append(f"| {name} | {row['relevant']:.0f} | {setting} | {k} | {row['precision']:.3f} | "
                             f"{row['recall']:.3f} | {row['returned']:.1f} ({row['median_returned']:.0f}) | "
                             f"{row['ms']:.1f} |")
                print(lines[-1], flush=True)
    collect.write_section("cutoff", "\n".join(lines))


if __name__ == "__main__":
    main()
