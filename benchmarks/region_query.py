"""Region queries and several examples with signs (issue 27, items 1-2), with the default model and pipeline.

1. Region queries: each clothing test photo pasted onto a Corel-1K scene (made in a temporary folder, never kept),
   searched against the clothing train gallery as the whole composite photo, as the pasted box (`crop`), and as a
   looser box a person would draw (the pasted box grown by a quarter of its size on each side, within the scene);
   the clothing photo alone is the ceiling. Two sizes: the photo's longer side half and a third of the scene's
   shorter side, the scene enlarged to 768 pixels on its longer side.
2. Several examples with signs (Rocchio: unit(mean of positives) - beta * mean of negatives, renormalised): on
   clothing (test queries, train gallery) and Corel-1K (query split, gallery split), each query with 0, 1 or 2 more
   test/query photos of its class as positives; then with one negative: (a) a query photo of the query's most
   confusable class (the class its class's single queries most often find wrongly in their top 10), and (b) "less
   like this" on the query's own first wrong match in the gallery, for beta 0.1 to 1. The first wrong match is
   hidden from every ranking of (b), the baseline too, so the gain is not its removal.

Every query is resolved by the searcher's own code (crop through images.load_image, several examples through
lookalike.index.examples.rocchio) and ranked over the whole gallery as `search` ranks it (evaluation.pipeline_scores
with the default expansion and the guard); mAP and P@10 by lookalike.evaluation.retrieval_scores.

    flock /tmp/lookalike-bench.lock .venv/bin/python -m benchmarks.region_query [--work DIR] [--queries N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import collect
from lookalike import ImageIndex
from lookalike.evaluation import Gallery, pipeline_scores, read_labels, retrieval_scores
from lookalike.index.examples import rocchio
from lookalike.search import Query, SearchOptions
from lookalike.settings import datasets_dir

BETAS = (0.1, 0.25, 0.5, 1.0)
SCENE_SIDE = 768
SIZES = {"half": 0.5, "third": 1 / 3}  # the pasted photo's longer side, against the scene's shorter side
LOOSE = 0.25  # the drawn box: the pasted box grown by this share of its width/height on each side


class Ranker:
    """An index's gallery split, ranked as `search` ranks it, for query vectors (full, as the model makes them)."""

    def __init__(self, index: ImageIndex, dataset: Path, split: str):
        images = [image for image in read_labels(dataset) if image.split == split]
        ids = index.ids_by_path()
        self.index = index
        self.ids = [ids[os.path.abspath(image.path)] for image in images]
        self.labels = np.array([image.label for image in images])
        self.gallery = Gallery.of_index(index, self.ids)
        self.expansion = SearchOptions().expansion

    def scores(self, vectors: np.ndarray, hidden: np.ndarray | None = None) -> np.ndarray:
        return pipeline_scores(self.index.searcher.to_searchable(np.asarray(vectors, np.float32)), self.gallery,
                               self.expansion, hidden)

    def quality(self, vectors: np.ndarray, labels: np.ndarray, hidden: np.ndarray | None = None) -> str:
        mean_ap, p10 = retrieval_scores(self.scores(vectors, hidden), labels, self.labels)
        return f"{mean_ap:.3f} / {p10:.3f}"


def gallery_index(dataset: Path, split: str, folder: Path) -> ImageIndex:
    """The dataset's gallery split indexed with the defaults (reused from `folder` when built before)."""
    index = ImageIndex.open_or_create(folder)
    if len(index) == 0:
        index.add_files([image.path for image in read_labels(dataset) if image.split == split])
    return index


def composite(photo: Path, scene: Path, share: float, rng: np.random.Generator, out: Path) -> tuple[int, ...]:
    """The photo pasted onto the enlarged scene at a random place; the pasted box (x, y, w, h)."""
    background = Image.open(scene).convert("RGB")
    background = background.resize((round(background.width * SCENE_SIDE / max(background.size)),
                                    round(background.height * SCENE_SIDE / max(background.size))))
    item = Image.open(photo).convert("RGB")
    longer = round(min(background.size) * share)
    item = item.resize((max(8, round(item.width * longer / max(item.size))),
                        max(8, round(item.height * longer / max(item.size)))))
    x = int(rng.integers(0, background.width - item.width + 1))
    y = int(rng.integers(0, background.height - item.height + 1))
    background.paste(item, (x, y))
    background.save(out, quality=92)
    return x, y, item.width, item.height


def loose(box: tuple[int, ...], scene: tuple[int, int]) -> tuple[int, int, int, int]:
    x, y, width, height = box
    left, top = max(0, round(x - LOOSE * width)), max(0, round(y - LOOSE * height))
    right, bottom = min(scene[0], round(x + width * (1 + LOOSE))), min(scene[1], round(y + height * (1 + LOOSE)))
    return left, top, right - left, bottom - top


def region_rows(clothing: Ranker, queries: list, scenes: list[Path], work: Path) -> list[str]:
    resolve = clothing.index.searcher.resolve
    labels = np.array([q.label for q in queries])
    alone = np.stack([resolve(Query(image=q.path)).vector for q in queries])
    rows = [f"| the clothing photo alone (ceiling) | {len(queries)} | {clothing.quality(alone, labels)} |"]
    for name, share in SIZES.items():
        rng = np.random.default_rng(7)
        whole, tight, drawn = [], [], []
        for number, query in enumerate(queries):
            path = work / f"composite-{name}-{number}.jpg"
            box = composite(Path(query.path), scenes[int(rng.integers(len(scenes)))], share, rng, path)
            whole.append(resolve(Query(image=str(path))).vector)
            tight.append(resolve(Query(image=str(path), crop=box)).vector)
            drawn.append(resolve(Query(image=str(path), crop=loose(box, Image.open(path).size))).vector)
        rows += [f"| pasted at {name} size: whole composite | {len(queries)} | "
                 f"{clothing.quality(np.stack(whole), labels)} |",
                 f"| pasted at {name} size: crop = the pasted box | {len(queries)} | "
                 f"{clothing.quality(np.stack(tight), labels)} |",
                 f"| pasted at {name} size: crop = the box grown {LOOSE:.0%} a side | {len(queries)} | "
                 f"{clothing.quality(np.stack(drawn), labels)} |"]
    return rows


def confusable(ranker: Ranker, vectors: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """Each class's most confusable class (among the queries' classes): the one its single queries most often find
    wrongly in their top 10."""
    top = np.argsort(-ranker.scores(vectors), axis=1, kind="stable")[:, :10]
    wrong: dict[str, Counter] = {}
    for label, row in zip(labels, ranker.labels[top], strict=True):
        wrong.setdefault(label, Counter()).update(found for found in row if found != label and found in labels)
    return {label: counts.most_common(1)[0][0] for label, counts in wrong.items() if counts}


def example_rows(name: str, ranker: Ranker, queries: list) -> list[str]:
    """mAP / P@10 with 1, 2, 3 positives, and with a negative of each kind at each beta."""
    rng = np.random.default_rng(11)
    labels = np.array([q.label for q in queries])
    vectors = np.stack([ranker.index.searcher.embed_image(q.path)[0] for q in queries])
    by_class = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    others = [rng.permutation(np.setdiff1d(by_class[label], [row]))[:2] for row, label in enumerate(labels)]
    rows = []
    for count in (1, 2, 3):
        combined = np.stack([rocchio([vectors[row], *vectors[others[row][:count - 1]]], [], 0.0)
                             for row in range(len(queries))])
        rows.append(f"| {name} | {count} positive{'s' if count > 1 else ''} | - | {ranker.quality(combined, labels)} |")
    near = confusable(ranker, vectors, labels)
    unlike = np.array([rng.choice(by_class[near[label]]) if label in near else -1 for label in labels])
    asked = unlike >= 0
    rows.append(f"| {name} | 1 positive ({asked.sum()} queries whose class has a confusable one) | - | "
                f"{ranker.quality(vectors[asked], labels[asked])} |")
    for beta in BETAS:
        signed = np.stack([rocchio([vectors[row]], [vectors[unlike[row]]], beta) for row in np.flatnonzero(asked)])
        rows.append(f"| {name} | 1 positive + a photo of the confusable class | {beta:g} | "
                    f"{ranker.quality(signed, labels[asked])} |")
    first = np.argsort(-ranker.scores(vectors), axis=1, kind="stable")
    wrong = np.array([row[np.flatnonzero(ranker.labels[row] != label)[0]] for row, label in zip(first, labels,
                                                                                              strict=True)])
    hidden = np.zeros((len(queries), len(ranker.ids)), bool)
    hidden[np.arange(len(queries)), wrong] = True
    rows.append(f"| {name} | 1 positive, its first wrong match hidden | - | "
                f"{ranker.quality(vectors, labels, hidden)} |")
    stored = ranker.index.vectors([ranker.ids[i] for i in wrong])
    for beta in BETAS:
        signed = np.stack([rocchio([vectors[row]], [stored[row]], beta) for row in range(len(queries))])
        rows.append(f"| {name} | 1 positive + less like its first wrong match | {beta:g} | "
                    f"{ranker.quality(signed, labels, hidden)} |")
    return rows


def sample(images: list, count: int | None) -> list:
    if count is None or count >= len(images):
        return images
    return [images[i] for i in sorted(np.random.default_rng(3).choice(len(images), count, replace=False))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, help="keep the gallery indexes here between runs")
    parser.add_argument("--queries", type=int, help="at most this many queries per set (default: all)")
    args = parser.parse_args()
    data = datasets_dir()
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        composites = Path(temporary) / "composites"
        composites.mkdir()
        clothing_index = gallery_index(data / "clothing", "train", work / "clothing-train")
        corel_index = gallery_index(data / "corel1k", "gallery", work / "corel-gallery")
        clothing, corel = Ranker(clothing_index, data / "clothing", "train"), Ranker(corel_index, data / "corel1k",
                                                                                     "gallery")
        clothing_queries = sample([i for i in read_labels(data / "clothing") if i.split == "test"], args.queries)
        corel_queries = sample([i for i in read_labels(data / "corel1k") if i.split == "query"], args.queries)
        scenes = [Path(i.path) for i in read_labels(data / "corel1k") if i.split == "gallery"]
        regions = region_rows(clothing, clothing_queries, scenes, composites)
        examples = example_rows("clothing", clothing, clothing_queries) + example_rows("Corel-1K", corel,
                                                                                        corel_queries)
        clothing_index.close()
        corel_index.close()
    lines = ["## Region queries and several examples (benchmarks/region_query.py)", "", collect.machine_line(), "",
             "Default model and pipeline (PCA 128, DBA, alpha-QE, the guard); each cell mAP / P@10 over the whole "
             f"gallery. Region queries: {len(clothing_queries)} clothing test photos pasted onto Corel-1K scenes "
             f"({SCENE_SIDE} pixels on the longer side) at a random place, against the {len(clothing.ids)} clothing "
             "train photos.", "",
             "| query | queries | mAP / P@10 |", "|---|---|---|", *regions, "",
             "Several examples with signs: `unit(mean of positives) - beta * mean of negatives`, renormalised "
             f"(lookalike.index.examples). Clothing: {len(clothing_queries)} test queries against the train gallery; "
             f"Corel-1K: {len(corel_queries)} queries against its {len(corel.ids)}-photo gallery. More positives are "
             "other query photos of the same class; the confusable class is the one each class's single queries "
             "most often find wrongly in their top 10.", "",
             "| set | query | beta | mAP / P@10 |", "|---|---|---|---|", *examples]
    collect.write_section("region_query", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
