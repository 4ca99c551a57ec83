"""An instance-level evaluation set made from any labelled folder: the same object seen again.

Category sets (Corel-1K, clothing) ask "more of this kind"; users also ask "this very object, photographed
again": another angle, a closer crop, other light. No such set ships with lookalike, so it builds one from
photos it has: each chosen photo becomes an object, its gallery holds the original and `views - 1` strong
edits of it (other "views"), and `queries` further edits are searched as new photos. Every other photo of
the source folder stays in the gallery as a distractor, an object of its own.

Strong edits stand in for a change of viewpoint: a crop keeping 50-70% of the area, a rotation of 8-20
degrees, a perspective warp, a colour and brightness shift, combined at random.

The result is an ordinary labelled folder (`labels.csv`: path,label,split with splits gallery and query),
so `lookalike evaluate` and `evaluation.evaluate_index` score it like any other.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

from PIL import Image, ImageEnhance

from lookalike.errors import RequestError
from lookalike.evaluation import read_labels


def strong_edit(image: Image.Image, rng: random.Random) -> Image.Image:
    """One random "other view" of a photo: crop, rotation, perspective and colour changes combined."""
    image = _crop(image, rng.uniform(0.5, 0.7), rng)
    image = image.rotate(rng.choice((-1, 1)) * rng.uniform(8, 20), resample=Image.Resampling.BICUBIC,
                         expand=True, fillcolor=(255, 255, 255))
    image = _perspective(image, rng.uniform(0.05, 0.15), rng)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))


def _crop(image: Image.Image, area: float, rng: random.Random) -> Image.Image:
    side = area ** 0.5
    width, height = max(1, int(image.width * side)), max(1, int(image.height * side))
    left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
    return image.crop((left, top, left + width, top + height))


def _perspective(image: Image.Image, strength: float, rng: random.Random) -> Image.Image:
    """Move the four corners inwards by up to `strength` of the side, as a camera turned a little would."""
    w, h = image.size
    dx, dy = w * strength, h * strength
    corners = [(rng.uniform(0, dx), rng.uniform(0, dy)), (w - rng.uniform(0, dx), rng.uniform(0, dy)),
               (w - rng.uniform(0, dx), h - rng.uniform(0, dy)), (rng.uniform(0, dx), h - rng.uniform(0, dy))]
    quad = [coordinate for corner in corners for coordinate in corner]
    return image.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def make_instance_set(source: str | os.PathLike[str], target: str | os.PathLike[str], objects: int = 300,
                      views: int = 3, queries: int = 2, seed: int = 0) -> Path:
    """Write an instance set built from the labelled folder `source` into `target` (see the module); the
    labels.csv path. `views` gallery photos of each of `objects` objects (the original and edits),
    `queries` new photos of each to search, every other source photo a distractor in the gallery."""
    if objects < 1 or views < 1 or queries < 1:
        raise RequestError("objects, views and queries must each be at least 1")
    rng = random.Random(seed)
    photos = sorted({image.path for image in read_labels(source)})
    chosen = set(rng.sample(photos, min(objects, len(photos))))
    target = Path(target)
    rows = []
    for number, photo in enumerate(photos):
        label = f"object-{number:05d}"
        rows.append((os.path.abspath(photo), label, "gallery"))
        if photo in chosen:
            rows += _edited_views(photo, target / label, label, views - 1, queries, rng)
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return target / "labels.csv"


def _edited_views(photo: Path, folder: Path, label: str, views: int, queries: int,
                  rng: random.Random) -> list[tuple[str, str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(photo) as opened:
        image = opened.convert("RGB")
    rows = []
    for number in range(views + queries):
        split = "gallery" if number < views else "query"
        path = folder / f"{split}-{number}.jpg"
        strong_edit(image, rng).save(path, format="JPEG", quality=90)
        rows.append((str(path.resolve()), label, split))
    return rows
