"""Model comparison: retrieval quality and embedding throughput for every offline model, layer,
pooling and PCA setting, on Corel-1K (query vs gallery) and clothing (test vs train).

Run: flock /tmp/lookalike-bench.lock python -m benchmarks.models
Indexes go to benchmarks/out/models/ and are reused (throughput is kept from the run that embedded).
Writes the "models" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.collect import HERE, machine_line, write_section
from lookalike.evaluation import default_splits, evaluate_index, read_labels
from lookalike.files import walk_images
from lookalike.index import ImageIndex
from lookalike.reduction import fit_pca
from lookalike.settings import datasets_dir

OUT = HERE / "out" / "models"
DATASETS = ("corel1k", "clothing")
BASELINE = {"corel1k": 0.898, "clothing": 0.533}  # lite0 head avg, the core's reference
ALL = 0  # PCA components: as many as the gallery allows (a rotation: only the centring changes cosines)


@dataclass(frozen=True)
class Setting:
    label: str
    model: str
    layer: str | None = None
    pool: str | None = None
    pca: tuple[int, bool] | None = None  # (components, whiten), fitted on the gallery vectors
    fit_on_index: bool = False  # fit PCA as `lookalike index` does: inside the index, on every indexed vector
    options: dict[str, Any] = field(default_factory=dict)

    def folder_name(self, dataset: str) -> str:
        model = "autoencoder" if self.model.startswith("autoencoder") else self.model
        return f"{dataset}-{model}-{self.layer or 'default'}-{self.pool or 'default'}"


def settings(dataset: str) -> list[Setting]:
    cae = OUT / f"cae-{dataset}.pt"
    lite0 = "efficientnet-lite0"
    return [  # in the order they run: the most telling first
        Setting("lite0 head avg (default)", lite0),
        Setting("lite0 head gem", lite0, "head", "gem"),
        Setting("lite0 head max", lite0, "head", "max"),
        Setting("lite0 head avg + PCA 256", lite0, pca=(256, False)),
        Setting("lite0 head avg + PCA 256 whitened", lite0, pca=(256, True)),
        Setting("lite0 head avg + PCA 128", lite0, pca=(128, False)),
        Setting("lite0 head gem + PCA 256", lite0, "head", "gem", pca=(256, False)),
        Setting("lite0 head gem + PCA 256 whitened", lite0, "head", "gem", pca=(256, True)),
        Setting("colour histogram (HSV)", "color-histogram"),
        Setting("perceptual hash (DCT)", "phash"),
        Setting("lite2 head avg", "efficientnet-lite2"),
        Setting("lite2 head gem", "efficientnet-lite2", "head", "gem"),
        Setting("autoencoder (trained on the collection)", f"autoencoder:{cae}"),
        Setting("lite0 stage7 gem", lite0, "stage7", "gem"),
        Setting("lite0 stage6 gem", lite0, "stage6", "gem"),
        Setting("lite0 head avg + PCA 64", lite0, pca=(64, False)),
        Setting("lite0 head avg + PCA all (centring only)", lite0, pca=(ALL, False)),
        Setting("lite0 head gem + PCA 128", lite0, "head", "gem", pca=(128, False)),
        Setting("lite2 head avg + PCA 128", "efficientnet-lite2", pca=(128, False)),
        Setting("lite2 head gem + PCA 128", "efficientnet-lite2", "head", "gem", pca=(128, False)),
        Setting("lite0 head avg + PCA 128 fitted in the index (the `lookalike index` default)", lite0,
                pca=(128, False), fit_on_index=True),
    ]


def ensure_autoencoder(dataset: Path, path: Path, epochs: int = 5) -> dict[str, Any]:
    """Train the CAE on every photo of the dataset (no labels), once; returns training facts."""
    from lookalike.embedders.autoencoder import train_autoencoder

    facts_file = path.with_suffix(".json")
    if path.exists() and facts_file.exists():
        return json.loads(facts_file.read_text())
    report = train_autoencoder(list(walk_images(dataset)), path, epochs=epochs)
    facts = {"images": report.images, "epochs": report.epochs, "seconds": round(report.seconds, 1),
             "first_loss": report.losses[0], "last_loss": report.losses[-1]}
    facts_file.write_text(json.dumps(facts))
    return facts


def indexed(dataset: Path, setting: Setting, name: str) -> tuple[ImageIndex, float]:
    """The dataset indexed with a setting (reused when present) and its images/s when it was embedded."""
    folder = OUT / setting.folder_name(name)
    speed_file = folder / "throughput.json"
    index = ImageIndex.open_or_create(folder, model=setting.model, layer=setting.layer, pool=setting.pool)
    if not speed_file.exists():
        side = index.embedder.input_side
        index.embedder.embed_batch(np.stack([index.embedder.preprocess(_warm_image(side))]))  # export outside timing
        report = index.add_folder(dataset)
        speed_file.write_text(json.dumps({"images_per_second": report.added / report.seconds, "added": report.added}))
    return index, json.loads(speed_file.read_text())["images_per_second"]


def embedding_speeds(photo: Path, rounds: int = 3, images: int = 32) -> dict[tuple[str, str, str], float]:
    """Images/s of preprocess + embed_batch on one decoded photo, per embedder: best of interleaved rounds,
    so every model sees the same load on a shared machine (file decoding excluded)."""
    from lookalike.embedders import get_embedder
    from lookalike.images import load_image

    embedders = {}
    for name in DATASETS:
        for setting in settings(name):
            key = (setting.model, setting.layer or "", setting.pool or "")
            if key not in embedders:
                embedders[key] = get_embedder(setting.model, layer=setting.layer, pool=setting.pool)
    best = dict.fromkeys(embedders, 0.0)
    for _ in range(rounds):
        for key, embedder in embedders.items():
            decoded = load_image(photo, target_side=embedder.input_side)
            embedder.embed_batch(embedder.preprocess(decoded)[None])  # warm
            started = time.perf_counter()
            embedder.embed_batch(np.stack([embedder.preprocess(decoded) for _ in range(images)]))
            best[key] = max(best[key], images / (time.perf_counter() - started))
    return best


def _warm_image(side: int) -> Any:
    from PIL import Image

    from lookalike.images import DecodedImage

    return DecodedImage(Image.new("RGB", (side, side), (128, 100, 90)), side, side)


def score(index: ImageIndex, dataset: Path, setting: Setting) -> dict[str, float]:
    if setting.fit_on_index:
        copy = OUT / f"{index.folder.name}-pca-copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(index.folder, copy)
        with ImageIndex.open(copy) as reduced:
            reduced.fit_pca(setting.pca[0], whiten=setting.pca[1])
            scores = evaluate_index(reduced, dataset)
        shutil.rmtree(copy)
    elif setting.pca is None:
        scores = evaluate_index(index, dataset)
    else:
        components, whiten = setting.pca
        gallery = _gallery_vectors(index, dataset)
        reduction = fit_pca(gallery, components or min(gallery.shape), whiten)
        scores = evaluate_index(index, dataset, similarity=lambda q, g: reduction.apply(q) @ reduction.apply(g).T)
    return {"mAP": scores.mean_average_precision, "P@10": scores.precision_at_10, "queries": scores.queries,
            "gallery": scores.gallery}


def _gallery_vectors(index: ImageIndex, dataset: Path) -> np.ndarray:
    images = read_labels(dataset)
    _, gallery_split = default_splits(images)
    ids_by_path = index.ids_by_path()
    ids = [ids_by_path[os.path.abspath(i.path)] for i in images
           if i.split == gallery_split and os.path.abspath(i.path) in ids_by_path]
    return index.vectors(ids)


def run() -> dict[str, dict[str, dict[str, float]]]:
    """Every setting on both sets, setting by setting; the section is rewritten after each, so an
    interrupted run still leaves its numbers."""
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {name: {} for name in DATASETS}
    for position in range(len(settings(DATASETS[0]))):
        for name in DATASETS:
            dataset = datasets_dir() / name
            setting = settings(name)[position]
            if setting.model.startswith("autoencoder"):
                results[name]["_autoencoder_training"] = ensure_autoencoder(dataset, OUT / f"cae-{name}.pt")
            started = time.perf_counter()
            index, speed = indexed(dataset, setting, name)
            with index:
                row = score(index, dataset, setting) | {"images_per_second": speed}
            results[name][setting.label] = row
            print(f"{name:<9} {setting.label:<42} mAP {row['mAP']:.4f} P@10 {row['P@10']:.4f} {speed:7.1f} img/s "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
        (OUT / "results.json").write_text(json.dumps(results, indent=2))
        write_section("models", markdown(results))
    photo = read_labels(datasets_dir() / DATASETS[0])[0].path
    speeds = embedding_speeds(photo)
    for name in DATASETS:
        for setting in settings(name):
            results[name][setting.label]["embed_per_second"] = speeds[(setting.model, setting.layer or "",
                                                                        setting.pool or "")]
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    write_section("models", markdown(results))
    return results


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    labels = [s.label for s in settings("corel1k")]
    lines = ["## Models, layers, pooling and PCA (issue 4)", "", machine_line(),
             "Other helpers' work was running on the same 2 cores, so throughputs (end-to-end indexing: decode, "
             "preprocess, embed, store) are indicative. Corel-1K: 100 queries vs 900 gallery; clothing: test vs "
             "train. PCA is fitted on the gallery vectors only (no labels), applied to queries and gallery, "
             "vectors re-normalised. Script: `benchmarks/models.py`.", "",
             "Speed: `embed/s` is preprocess + network on an already decoded photo, best of 3 interleaved rounds "
             "(comparable between models); `index/s` is end-to-end indexing of the folder in this run (decode "
             "included, load from other work varied during the run).", "",
             "| setting | Corel-1K mAP | P@10 | clothing mAP | P@10 | embed/s | index/s Corel | index/s clothing |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label in labels:
        corel, clothing = results["corel1k"].get(label), results["clothing"].get(label)
        cells = []
        for row in (corel, clothing):
            cells += [f"{row['mAP']:.3f}", f"{row['P@10']:.3f}"] if row else ["-", "-"]
        embed = (corel or clothing or {}).get("embed_per_second")
        cells.append(f"{embed:.0f}" if embed else "-")
        cells += [f"{row['images_per_second']:.0f}" if row else "-" for row in (corel, clothing)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "ResNet50 (layer3, layer4) and VGG16 (pool5, fc6, fc7): not measurable here, no torchvision ImageNet "
              "weights on this machine and none can be downloaded (architecture, taps and weight loading are tested "
              "with random weights). CLIP: not offered (open_clip_torch requires torchvision and timm).", ""]
    for name in DATASETS:
        facts = results[name].get("_autoencoder_training")
        if facts:
            lines.append(f"Autoencoder on {name}: trained on all {facts['images']} photos, {facts['epochs']} epochs, "
                         f"{facts['seconds']:.0f}s, reconstruction MSE {facts['first_loss']:.4f} -> "
                         f"{facts['last_loss']:.4f}.")
    lines += ["", verdict(results)]
    return "\n".join(lines)


def verdict(results: dict[str, dict[str, dict[str, float]]]) -> str:
    base = "lite0 head avg (default)"
    if not all(base in results[n] for n in DATASETS):
        return "(incomplete run)"
    speed_key = "embed_per_second" if "embed_per_second" in results["corel1k"][base] else "images_per_second"
    base_speed = min(results[n][base][speed_key] for n in DATASETS)
    winners = [label for label in results["corel1k"] if not label.startswith("_") and label != base
               and all(label in results[n] and results[n][label]["mAP"] > results[n][base]["mAP"]
                       for n in DATASETS)]
    fast = [w for w in winners if min(results[n][w][speed_key] for n in DATASETS) >= base_speed / 2]
    if not winners:
        return "No setting beats the default (lite0 head avg) on both sets: the default stays."
    chosen = "lite0 head avg + PCA 128"
    decision = ("`lookalike index` therefore fits PCA 128 (no whitening) on every new index of at least 1000 "
                "images (`--pca 0` opts out); the embedder itself is unchanged." if chosen in fast else
                f"{chosen} did not beat the default on both sets: the automatic PCA in `lookalike index` "
                "(lookalike.reduction.DEFAULT_COMPONENTS) should be switched off.")
    return (f"Settings beating the default on both sets: {', '.join(winners)}; of those at least half as fast: "
            f"{', '.join(fast) or 'none'}. {decision}")


def main() -> None:
    run()
    print(HERE / "results" / "models.md")


if __name__ == "__main__":
    main()
