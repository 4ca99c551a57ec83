"""Indexing throughput for phone and camera formats (issue 27 item 4): the same clothing photos saved as JPEG, HEIC
(pillow-heif) and AVIF (Pillow), each folder indexed by `add_folder` into a new default index (EfficientNet-Lite0)
and decoded alone; interleaved rounds, medians. HEIC and AVIF cost more to decode than JPEG; the question is how
much of the indexing rate that takes.

    flock /tmp/lookalike-bench.lock .venv/bin/python -m benchmarks.phone_formats [--photos 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks import collect
from lookalike import ImageIndex, images
from lookalike.settings import datasets_dir

FORMATS = {"jpeg": ("JPEG", ".jpg"), "heic": ("HEIF", ".heic"), "avif": ("AVIF", ".avif")}


def make_folders(count: int, work: Path) -> dict[str, Path]:
    """The first `count` clothing test photos, saved in each format at quality 85."""
    photos = sorted((datasets_dir() / "clothing" / "test").rglob("*.jpg"))[:count]
    folders = {}
    for name, (pil_format, suffix) in FORMATS.items():
        folder = folders.setdefault(name, work / name)
        folder.mkdir()
        for number, photo in enumerate(photos):
            with Image.open(photo) as opened:
                opened.convert("RGB").save(folder / f"{number:04d}{suffix}", pil_format, quality=85)
    return folders


def indexing_rate(folder: Path, work: Path) -> float:
    target = work / f"index-{folder.name}"
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    with ImageIndex.create(target, pca=0, dba=0) as index:
        report = index.add_folder(folder)
    assert report.failed == 0, report.failures
    return report.added / (time.perf_counter() - started)


def decoding_rate(folder: Path) -> float:
    files = sorted(folder.iterdir())
    started = time.perf_counter()
    for path in files:
        images.load_image(path)
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folders = make_folders(args.photos, work)
        sizes = {name: sum(p.stat().st_size for p in folder.iterdir()) / len(list(folder.iterdir()))
                 for name, folder in folders.items()}
        indexing_rate(folders["jpeg"], work)  # the model exported and cached before any round
        rates: dict[str, dict[str, list[float]]] = {name: {"index": [], "decode": []} for name in FORMATS}
        for _ in range(args.rounds):
            for name, folder in folders.items():
                rates[name]["index"].append(indexing_rate(folder, work))
                rates[name]["decode"].append(decoding_rate(folder))
    jpeg_index = statistics.median(rates["jpeg"]["index"])
    lines = ["## Phone and camera formats: indexing HEIC and AVIF (benchmarks/phone_formats.py)", "",
             collect.machine_line(), "",
             f"{args.photos} clothing test photos saved as JPEG, HEIC and AVIF (quality 85), each folder indexed by "
             f"`add_folder` into a new index (EfficientNet-Lite0, no PCA or DBA) and decoded alone by "
             f"`images.load_image`; {args.rounds} interleaved rounds, medians (rounds in brackets), on a shared "
             "2-core machine.", "",
             "| format | mean file | indexed images/s | vs JPEG | decoded alone images/s |", "|---|---|---|---|---|"]
    for name in FORMATS:
        index_rate, decode_rate = (statistics.median(rates[name][part]) for part in ("index", "decode"))
        rounds = ", ".join(f"{r:.1f}" for r in rates[name]["index"])
        lines.append(f"| {name} | {sizes[name] / 1024:.0f} KiB | {index_rate:.1f} ({rounds}) | "
                     f"{index_rate / jpeg_index:.2f}x | {decode_rate:.0f} |")
    print(collect.write_section("phone-formats", "\n".join(lines)))


if __name__ == "__main__":
    main()
