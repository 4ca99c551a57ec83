"""What capture metadata costs (issue 27 item 3): indexing with and without reading each photo's EXIF capture, and a
search filtered by the date taken against one without a filter.

1. Indexing: 400 clothing photos saved with an EXIF date, camera and GPS position, indexed by
   `add_folder` into a new default index (EfficientNet-Lite0, no PCA or DBA: the embedding and storing only) and
   decoded alone (`ingest.decoded_batches`, the decoder threads that also read the EXIF), each with the capture read
   (the code as it is) and with `capture_of` replaced by one that reads nothing (the code before: the EXIF was
   already parsed for the orientation). Interleaved rounds; medians.
2. Search: an index of 100,000 stored 256-d vectors (color-histogram's length, stored directly: no photos), taken
   evenly over 2015-2024, 10 cameras, GPS over Europe; `ImageIndex.search(vector=q, k=10)` for 100 queries with no
   filter, with a date range of a year, of a month, from 2020 on, a camera, near (a 50 km circle), and the year's
   range with sort=-taken.

    flock /tmp/lookalike-bench.lock .venv/bin/python -m benchmarks.capture [--part indexing|search]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import collect
from benchmarks.trust import search_ms
from lookalike import ImageIndex, images
from lookalike.capture import DATE_TIME_ORIGINAL, EXIF_IFD, GPS_IFD, MAKE, MODEL, TAKEN_FORMAT, Capture
from lookalike.embedders import get_embedder
from lookalike.index import NewImage
from lookalike.ingest import decoded_batches
from lookalike.settings import datasets_dir

PHOTOS = 400
ROUNDS = 3
STORED = 100_000
QUERIES = 100
CAMERAS = [("Canon", f"Canon EOS {n}D") for n in range(5)] + [("NIKON CORPORATION", f"NIKON D{n}50") for n in range(5)]


def photos_with_exif(folder: Path) -> list[Path]:
    """PHOTOS clothing test photos, saved again with an EXIF date, camera and GPS position."""
    sources = sorted((datasets_dir() / "clothing").rglob("*.jpg"))[:PHOTOS]
    made = []
    for number, source in enumerate(sources):
        exif = Image.Exif()
        exif[MAKE], exif[MODEL] = CAMERAS[number % len(CAMERAS)]
        exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = f"20{10 + number % 14}:0{1 + number % 9}:1{number % 10} 12:00:00"
        gps = exif.get_ifd(GPS_IFD)
        gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 7.0)
        target = folder / f"{number:04}.jpg"
        with Image.open(source) as image:
            image.convert("RGB").save(target, quality=92, exif=exif)
        made.append(target)
    return made


@contextmanager
def capture_reading(enabled: bool):
    """The code as it is (enabled), or with the EXIF capture not read (what the decoder did before)."""
    original = images.capture_of
    if not enabled:
        images.capture_of = lambda exif: Capture()
    try:
        yield
    finally:
        images.capture_of = original


def index_rate(photos: Path, work: Path) -> float:
    """Photos per second through add_folder into a new index."""
    target = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    with ImageIndex.create(target / "index", pca=0, dba=0) as index:
        report = index.add_folder(photos)
    seconds = time.perf_counter() - started
    assert report.handled == PHOTOS and not report.failures, report.failures[:3]  # copies in the set: reused
    shutil.rmtree(target)
    return PHOTOS / seconds


def decode_rate(paths: list[Path]) -> float:
    embedder = get_embedder()
    started = time.perf_counter()
    count = sum(len(ready) for ready, _ in decoded_batches(embedder, paths))
    assert count == len(paths)
    return count / (time.perf_counter() - started)


def interleaved(measure: Callable[[], float]) -> dict[str, list[float]]:
    rounds: dict[str, list[float]] = {"capture read": [], "capture not read": []}
    for _ in range(ROUNDS):
        for name, enabled in (("capture read", True), ("capture not read", False)):
            with capture_reading(enabled):
                rounds[name].append(measure())
    return rounds


def indexing_lines(work: Path) -> list[str]:
    photos = work / "photos"
    photos.mkdir()
    paths = photos_with_exif(photos)
    with ImageIndex.create(work / "warm", pca=0, dba=0) as warm:  # the model prepared once, outside the timing
        warm.add_files(paths[:8])
    assert images.load_image(paths[0]).capture.camera == "Canon EOS 0D"
    decoded = interleaved(lambda: decode_rate(paths))
    indexed = interleaved(lambda: index_rate(photos, work))
    lines = [f"{PHOTOS} clothing photos with an EXIF date, camera and GPS position; {ROUNDS} interleaved rounds, "
             "median (each round in brackets).", "", "| step | capture read | capture not read | ratio |",
             "|---|---|---|---|"]
    for step, rounds in (("decode only (images/s)", decoded), ("add_folder, EfficientNet-Lite0 (images/s)", indexed)):
        read, skipped = statistics.median(rounds["capture read"]), statistics.median(rounds["capture not read"])
        lines.append(f"| {step} | {read:.1f} ({_each(rounds['capture read'])}) | {skipped:.1f} "
                     f"({_each(rounds['capture not read'])}) | {read / skipped:.3f} |")
    return lines


def stored_index(folder: Path) -> ImageIndex:
    """STORED random unit vectors with captures spread over 2015-2024, 10 cameras and Europe."""
    rng = np.random.default_rng(0)
    index = ImageIndex.create(folder, model="color-histogram", pca=0, dba=0)
    start, span = datetime(2015, 1, 1), timedelta(days=3653)
    run = index.sync()
    for first in range(0, STORED, 10_000):
        vectors = rng.normal(size=(10_000, 256)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = []
        for number in range(first, first + 10_000):
            taken = (start + span * (number / STORED)).strftime(TAKEN_FORMAT)
            make, model = CAMERAS[number % len(CAMERAS)]
            place = (float(rng.uniform(36, 60)), float(rng.uniform(-10, 30)))
            batch.append(NewImage(f"{folder}/photos/{number}.jpg", f"{number:064x}", 1000, 1.0, 640, 480,
                                  Capture(taken, "exif", make, model, *place)))
        run.store_images(batch, vectors)
    run.finish()
    return index


def search_lines(work: Path) -> list[str]:
    index = stored_index(work / "stored")
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(QUERIES, 256)).astype(np.float32)
    settings = {
        "no filter": {},
        "a year: taken>=2021-01-01, taken<2022-01-01": {"where": ["taken>=2021-01-01", "taken<2022-01-01"]},
        "a month: taken=2021-06": {"where": ["taken=2021-06"]},
        "from 2020: taken>=2020": {"where": ["taken>=2020"]},
        "camera=Canon EOS 1D": {"where": ["camera=Canon EOS 1D"]},
        "near=48.85,2.35,50": {"near": "48.85,2.35,50"},
        "a year, sort=-taken": {"where": ["taken>=2021-01-01", "taken<2022-01-01"], "sort": "-taken"},
    }
    kept = {name: len(index.searcher.ids_matching(_options(options))) for name, options in settings.items()}
    for options in settings.values():
        search_ms(index, queries[:10], **options)  # warm
    rounds: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(ROUNDS):
        for name, options in settings.items():
            rounds[name].append(search_ms(index, queries, **options))
    index.close()
    lines = [f"`ImageIndex.search(vector=q, k=10)`, {QUERIES} random queries over {STORED:,} stored 256-d vectors "
             "(FAISS flat), median ms per search of each round's median over "
             f"{ROUNDS} interleaved rounds (rounds in brackets).", "",
             "| filter | images it allows | ms per search | vs no filter |", "|---|---|---|---|"]
    plain = statistics.median(rounds["no filter"])
    for name, values in rounds.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {kept[name]:,} | {median:.1f} ({_each(values)}) | {median / plain:.2f}x |")
    return lines


def _options(options: dict) -> object:
    from lookalike.search import SearchOptions

    return SearchOptions.of(**options)


def _each(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main(parts: list[str]) -> None:
    """Each part writes its own section (capture-indexing, capture-search), so one can be measured again alone."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        work = Path(folder)
        if "indexing" in parts:
            lines = ["## Capture metadata: indexing with and without reading the EXIF capture (benchmarks/capture.py)",
                     "", collect.machine_line(), "", *indexing_lines(work), "",
                     "The EXIF was parsed for the orientation before; reading the date, camera and GPS position from "
                     "it adds two sub-directory reads per photo."]
            collect.write_section("capture-indexing", "\n".join(lines))
            print("\n".join(lines))
        if "search" in parts:
            lines = ["## Capture metadata: search filtered by the date taken, camera and place (benchmarks/capture.py "
                     "--part search)", "", collect.machine_line(), "", *search_lines(work), "",
                     "The filters become allowed ids, which FAISS searches among; sort reorders the k best. The dates "
                     "are an index-only scan of `taken`; camera and near scan the small index of camera and place "
                     "(never the table, whose rows hold the vectors), the distance computed for the latitude band "
                     "at once."]
            collect.write_section("capture-search", "\n".join(lines))
            print("\n".join(lines))


if __name__ == "__main__":
    chosen = sys.argv[sys.argv.index("--part") + 1:][:1] if "--part" in sys.argv else ["indexing", "search"]
    main(chosen)
