"""CLIP-family models: embedding speed on this machine, and retrieval quality where real weights are.

Speed is measured with random weights of OpenAI ViT-B/32's exact architecture (CLIPConfig's defaults), which cost
the same to run as the trained ones; no machine here can download those. Quality (text-to-image mAP on clothing's
10 types, Corel-1K image-to-image mAP) is measured only when LOOKALIKE_CLIP_WEIGHTS names a real checkpoint folder
(LOOKALIKE_CLIP_MODEL: its name, default `clip`).

Run: flock /tmp/lookalike-bench.lock python -m benchmarks.text_search
Writes the "text-search" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.collect import HERE, machine_line, write_section
from lookalike.embedders import get_embedder
from lookalike.evaluation import average_precision, evaluate_index, read_labels
from lookalike.index import ImageIndex
from lookalike.settings import datasets_dir

OUT = HERE / "out" / "text_search"
BATCH, ROUNDS = 32, 7


def random_vit_b32(folder: Path) -> Path:
    """A checkpoint folder with ViT-B/32's architecture and random weights (and a 49,408-token tokenizer)."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for letter in letters:
        vocab |= {letter: len(vocab), letter + "</w>": len(vocab) + 1}
    while len(vocab) < 49408:
        vocab[f"filler{len(vocab)}</w>"] = len(vocab)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).eval().save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def interleaved_rates(embedders: dict[str, Any]) -> dict[str, float]:
    """Images per second of each network alone: the median of ROUNDS batches after a warm-up, the networks taking
    turns batch by batch so that whatever else the shared cores run slows them alike."""
    rng = np.random.default_rng(0)
    batches = {name: rng.standard_normal((BATCH, 3, e.input_side, e.input_side), dtype=np.float32)
               for name, e in embedders.items()}
    seconds: dict[str, list[float]] = {name: [] for name in embedders}
    for round_number in range(ROUNDS + 1):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            embedder.embed_batch(batches[name])
            if round_number:  # the first round warms up
                seconds[name].append(time.perf_counter() - started)
    return {name: BATCH / statistics.median(times) for name, times in seconds.items()}


def text_latency_ms(embedder: Any) -> float:
    embedder.embed_texts(["a photo of a dress"])
    times = []
    for round_number in range(20):
        started = time.perf_counter()
        embedder.embed_texts([f"a red dress with long sleeves {round_number}"])
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def speed_rows() -> list[str]:
    folder = random_vit_b32(OUT / "random-vit-b32")
    before = os.environ.get("LOOKALIKE_CACHE")
    os.environ["LOOKALIKE_CACHE"] = tempfile.mkdtemp(dir=OUT)  # a fresh cache: the export is timed every run
    try:
        clip = get_embedder("clip-vit-b32", weights=folder)
        started = time.perf_counter()
        clip.export_towers()
        export_seconds = time.perf_counter() - started
        return measured_rows(clip, folder, export_seconds)
    finally:
        shutil.rmtree(os.environ.pop("LOOKALIKE_CACHE"))
        if before is not None:
            os.environ["LOOKALIKE_CACHE"] = before


def measured_rows(clip: Any, folder: Path, export_seconds: float) -> list[str]:
    rates = interleaved_rates({"clip": clip, "lite0": get_embedder("efficientnet-lite0")})
    clip_rate, lite0_rate = rates["clip"], rates["lite0"]
    sizes = {path.name: path.stat().st_size / 2**20 for path in (folder / "model.safetensors",
                                                                clip.image_network.onnx_path(),
                                                                clip.text_network.onnx_file)}
    return [
        f"| image tower, network only (batches of {BATCH}, median of {ROUNDS}) | {clip_rate:.1f} images/s | "
        f"{clip_rate / lite0_rate:.3f} of efficientnet-lite0's {lite0_rate:.0f} images/s, taking turns with it |",
        f"| text tower, one query (median of 20) | {text_latency_ms(clip):.1f} ms | |",
        f"| one-off export of both towers to ONNX (checked against torch) | {export_seconds:.0f} s | |",
        f"| weights file / image tower ONNX / text tower ONNX | {' / '.join(f'{mb:.0f} MiB' for mb in sizes.values())}"
        " | |",
    ]


def text_to_image_map(index: ImageIndex, images: list[Any]) -> float:
    """Mean over clothing's types of the AP of "a photo of a {type}" over the indexed images."""
    label_of = {os.path.abspath(image.path): image.label for image in images}
    scores = []
    for label in sorted({image.label for image in images}):
        ranked = index.search(text=f"a photo of a {label}", k=len(images)).matches
        scores.append(average_precision(np.array([label_of.get(m.path) == label for m in ranked])))
    return float(np.mean(scores))


def quality_rows() -> list[str]:
    weights = os.environ.get("LOOKALIKE_CLIP_WEIGHTS")
    if not weights:
        return ["Quality was not measured: no real CLIP weights can be downloaded on this machine. Where they are, "
                "`LOOKALIKE_CLIP_WEIGHTS=FOLDER python -m benchmarks.text_search` adds the rows."]
    model = os.environ.get("LOOKALIKE_CLIP_MODEL", "clip")
    rows = ["| measure | mAP |", "|---|---|"]
    clothing = datasets_dir() / "clothing"
    images = [image for image in read_labels(clothing) if image.split == "test"]
    with ImageIndex.create(OUT / f"clothing-{model}-{time.time_ns()}", model=model, weights=Path(weights),
                           pca=0) as index:
        index.add_files(image.path for image in images)
        rows.append(f"| clothing test split ({len(images)} photos): text-to-image, 10 types | "
                    f"{text_to_image_map(index, images):.4f} |")
    with ImageIndex.create(OUT / f"corel-{model}-{time.time_ns()}", model=model, weights=Path(weights),
                           pca=0) as index:
        index.add_folder(datasets_dir() / "corel1k")
        scores = evaluate_index(index, datasets_dir() / "corel1k")
        rows.append(f"| Corel-1K image-to-image (query vs gallery) | {scores.mean_average_precision:.4f} |")
    return rows


def main() -> None:
    lines = ["## Search by words: CLIP-family models (benchmarks/text_search.py)", "", machine_line(), "",
             "Speed with random weights of ViT-B/32's architecture (the cost of the real model), ONNX Runtime on "
             "the CPU:", "", "| measure | value | compared |", "|---|---|---|", *speed_rows(), "", *quality_rows()]
    print(write_section("text-search", "\n".join(lines)))


if __name__ == "__main__":
    main()
