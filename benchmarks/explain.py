"""explain (issue 27, item 6): how long one pair takes, and how often the heat map's peak lies on what two photos share.

1. Time per pair: ImageIndex.explain on pairs of indexed Corel-1K photos (a query and its first match), the network's
   feature maps included (its session opened once before), median and 90th percentile; and the first call of a
   process, which opens the feature-map network (its one-off export to the cache is not counted).
2. Where the heat peaks: the same clothing photo pasted (a third of the scene's width, at random places) into two
   different Corel-1K scenes; a hit when the peak of each photo's heat map lies inside the pasted photo in both.

    flock /tmp/lookalike-bench.lock .venv/bin/python -m benchmarks.explain
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import collect
from benchmarks.cutoff import built
from lookalike import ImageIndex
from lookalike.evaluation import read_labels
from lookalike.explain import peak
from lookalike.index.explained import EXPLAIN_SIDE
from lookalike.settings import datasets_dir

PAIRS = 40
COMPOSITES = 60
SCENE = (480, 320)


def timings(index: ImageIndex) -> tuple[float, list[float]]:
    ids = [record.id for record in index.records()]
    started = time.perf_counter()
    index.explain(ids[0], ids[1])
    first = time.perf_counter() - started
    seconds = []
    for query in random.Random(0).sample(ids, PAIRS):
        match = index.search(id=query, k=1).matches[0].id
        started = time.perf_counter()
        index.explain(query, match)
        seconds.append(time.perf_counter() - started)
    return first, seconds


def pasted(photo: Path, scene: Path, rng: random.Random, target: Path) -> tuple[int, int, int, int]:
    thing = Image.open(photo).convert("RGB")
    width = SCENE[0] // 3
    thing = thing.resize((width, min(SCENE[1] - 10, round(width * thing.height / thing.width))))
    place = (rng.randrange(0, SCENE[0] - thing.width), rng.randrange(0, SCENE[1] - thing.height + 1))
    picture = Image.open(scene).convert("RGB").resize(SCENE)
    picture.paste(thing, place)
    picture.save(target, quality=95)
    return place[0], place[1], place[0] + thing.width, place[1] + thing.height


def inside(point: tuple[int, int], box: tuple[int, int, int, int]) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def peaks_on_the_shared_photo(index: ImageIndex, data: Path, work: Path) -> tuple[int, int, int]:
    rng = random.Random(1)
    things = [image.path for image in read_labels(data / "clothing") if image.split == "test"]
    scenes = [image.path for image in read_labels(data / "corel1k")]
    both = either = 0
    for number in range(COMPOSITES):
        thing = rng.choice(things)
        first, second = rng.sample(scenes, 2)
        box_a = pasted(thing, first, rng, work / f"{number}-a.jpg")
        box_b = pasted(thing, second, rng, work / f"{number}-b.jpg")
        explanation = index.explain(work / f"{number}-a.jpg", work / f"{number}-b.jpg")
        hits = [inside(peak(explanation.heat_a), box_a), inside(peak(explanation.heat_b), box_b)]
        both += all(hits)
        either += any(hits)
    return both, either, COMPOSITES


def main() -> None:
    data = datasets_dir()
    default, _ = built("Corel-1K", data / "corel1k", "gallery")
    with ImageIndex.open(default) as index, tempfile.TemporaryDirectory() as work:
        first, seconds = timings(index)
        both, either, count = peaks_on_the_shared_photo(index, data, Path(work))
    values = np.array(seconds) * 1e3
    lines = ["## explain: time per pair and where the heat peaks (benchmarks/explain.py)", "", collect.machine_line(),
             "",
             f"ImageIndex.explain on {PAIRS} pairs of indexed Corel-1K photos (384x256; a photo and its first match; "
             f"photos read with the shorter side up to {EXPLAIN_SIDE}): the two feature maps (EfficientNet-Lite0 "
             "cut before pooling, float32, the whole photo), the shares and the side-by-side picture (its PNG "
             "encoding, done for out= and over HTTP, not included).", "",
             "| what | median | p90 | first call of a process |", "|---|---|---|---|",
             f"| one pair | {np.median(values):.0f} ms | {np.percentile(values, 90):.0f} ms | {first * 1e3:.0f} ms "
             "(opens the feature-map network) |", "",
             f"Where the heat peaks: one clothing test photo pasted (a third of the width) at random places into two "
             f"different Corel-1K scenes, {count} pairs: the peak of both heat maps on the pasted photo in {both} "
             f"({both / count:.0%}), of at least one in {either} ({either / count:.0%}); the misses peak on the scene."]
    collect.write_section("explain", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
