"""Indexing video: seconds of footage indexed per second, keyframes kept per minute, shots found, and photos
finding their shot (issue 27, item 5).

There is no video among the shared datasets, so the footage is made from them: Corel-1K photos as shots of 2-9 s
(random lengths, fixed seed), each slowly zoomed and panned (a Ken Burns move: every frame differs from the last),
with a little sensor noise, encoded with H.264 (yuv420p, CRF 23) at 640x360 and 1280x720, 30 fps. A shot's start
is found when a keyframe lies within 0.5 s of it (the frames are compared every 0.5 s); a keyframe further than
that from every start is a false cut. Searching by a shot's photo (the original, not a frame) should find a frame
of that shot first.

    python -m benchmarks.video [--minutes 2]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from benchmarks import collect
from lookalike import ImageIndex
from lookalike.evaluation import read_labels
from lookalike.settings import datasets_dir
from lookalike.video import DEFAULT_PER_MINUTE, DRIFT, SAMPLE_EVERY, SCENE_CHANGE, frame_of, keyframes

FPS = 30
SIZES = ((640, 360), (1280, 720))
FOUND_WITHIN = 0.5  # seconds between a shot's start and a keyframe that finds it


@dataclass(frozen=True)
class Shot:
    photo: Path
    start: float
    seconds: float


def plan_shots(photos: list[Path], minutes: float, seed: int = 0) -> list[Shot]:
    """Shots of 2-9 s of distinct photos, filling `minutes` of footage."""
    rng = random.Random(seed)
    chosen = rng.sample(photos, k=min(len(photos), int(minutes * 60 / 2) + 1))
    shots, start = [], 0.0
    for photo in chosen:
        if start >= minutes * 60:
            break
        seconds = max(1, round(min(rng.uniform(2, 9), minutes * 60 - start) * FPS)) / FPS  # whole frames
        shots.append(Shot(photo, start, seconds))
        start += seconds
    return shots


def shot_frames(shot: Shot, size: tuple[int, int], rng: np.random.Generator):
    """The shot's frames: its photo zoomed from 100% to 85% while panning across, plus noise."""
    width, height = size
    picture = Image.open(shot.photo).convert("RGB")
    scale = max(width / picture.width, height / picture.height) * 1.25
    big = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BILINEAR)
    count = max(1, round(shot.seconds * FPS))
    for step in range(count):
        progress = step / count
        zoom = 1 - 0.15 * progress
        crop_w, crop_h = big.width * zoom / 1.25, big.height * zoom / 1.25
        left = (big.width - crop_w) * progress
        top = (big.height - crop_h) * 0.5
        frame = big.resize(size, Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
        pixels = np.asarray(frame, dtype=np.int16) + rng.integers(-4, 5, size=(height, width, 3), dtype=np.int16)
        yield np.clip(pixels, 0, 255).astype(np.uint8)


def write_footage(path: Path, shots: list[Shot], size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for shot in shots:
            for pixels in shot_frames(shot, size, rng):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


@dataclass
class Measured:
    size: tuple[int, int]
    footage_seconds: float
    megabytes: float
    index_seconds: float
    scan_seconds: float  # decoding and choosing keyframes alone, no network
    kept: int
    found_shots: int
    false_cuts: int
    capped_minutes: int
    top1: float


def measure(video: Path, shots: list[Shot], work: Path) -> Measured:
    footage = shots[-1].start + shots[-1].seconds
    started = time.perf_counter()
    times = [keyframe.time for keyframe in keyframes(video)]
    scan = time.perf_counter() - started
    with ImageIndex.create(work / f"index-{video.stem}") as index:
        started = time.perf_counter()
        report = index.add_folder(video.parent)
        indexed = time.perf_counter() - started
        assert report.failed == 0 and report.added == len(times), report.to_dict()
        hits = [_finds_its_shot(index, shot, shots) for shot in shots]
    starts = [shot.start for shot in shots]
    found = sum(any(abs(t - s) <= FOUND_WITHIN for t in times) for s in starts)
    false = sum(all(abs(t - s) > FOUND_WITHIN for s in starts) for t in times)
    per_minute = np.bincount([int(t // 60) for t in times])
    return Measured(_size(video), footage, video.stat().st_size / 1e6, indexed, scan, len(times), found, false,
                    int((per_minute >= DEFAULT_PER_MINUTE).sum()), float(np.mean(hits)))


def _finds_its_shot(index: ImageIndex, shot: Shot, shots: list[Shot]) -> bool:
    best = frame_of(index.search(shot.photo, k=1).matches[0].path)
    assert best is not None
    return shot.start - FOUND_WITHIN <= best.time < shot.start + shot.seconds


def _size(video: Path) -> tuple[int, int]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


def row(m: Measured, shots: int) -> str:
    minutes = m.footage_seconds / 60
    return (f"| {m.size[0]}x{m.size[1]} | {m.footage_seconds:.0f} s, {m.megabytes:.1f} MB | "
            f"{m.footage_seconds / m.index_seconds:.1f} | {m.footage_seconds / m.scan_seconds:.1f} | "
            f"{m.kept / minutes:.1f} ({m.kept}) | {m.kept / m.footage_seconds:.2f} | "
            f"{m.found_shots}/{shots} | {m.false_cuts} | {m.capped_minutes} | {m.top1:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="footage per video")
    args = parser.parse_args()
    photos = [image.path for image in read_labels(datasets_dir() / "corel1k")]
    shots = plan_shots(photos, args.minutes)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for size in SIZES:
            video = work / f"{size[1]}p" / f"footage-{size[1]}p.mp4"
            video.parent.mkdir()
            write_footage(video, shots, size)
            results.append(measure(video, shots, work))
            print(row(results[-1], len(shots)), flush=True)
    lines = ["## Video: keyframes indexed per second of footage (benchmarks/video.py)", "",
             collect.machine_line(), "",
             f"Footage made from {len(shots)} Corel-1K photos as shots of 2-9 s (slow zoom and pan, noise), H.264 at "
             f"{FPS} fps. Defaults: frames compared every {SAMPLE_EVERY} s by their colour histograms, a cut at a "
             f"distance of {SCENE_CHANGE} from the frame before, a drift at {DRIFT} from the last keyframe, at most "
             f"{DEFAULT_PER_MINUTE} keyframes a minute; model efficientnet-lite0 (the default). 'Indexed' is "
             "ImageIndex.add_folder on the folder holding the video (decode, choose, embed, store); 'scanned' only "
             "decodes and chooses (lookalike.video.keyframes). A shot is found when a keyframe lies within 0.5 s of "
             "its start; a false cut is a keyframe further than that from every start; 'at cap' counts the minutes "
             "that kept the most keyframes allowed (there, cuts were dropped). 'Top-1' searches by each shot's photo "
             "and counts a frame of that shot first.", "",
             "| size | footage | indexed (s of footage / s) | scanned (s / s) | keyframes / minute (all) | "
             "keyframes / s of footage | shots found | false cuts | minutes at cap | top-1 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [row(m, len(shots)) for m in results]
    collect.write_section("video", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
