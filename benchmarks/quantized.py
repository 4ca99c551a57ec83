"""int8 EfficientNet-Lite0 and the uint8 input folded into the graph: speed and retrieval quality (issue 18, part 3).

Run: python -m benchmarks.quantized   (reads LOOKALIKE_DATASETS, default ../shared/datasets; run it under
`flock /tmp/lookalike-bench.lock`). Writes the "quantized" section of benchmarks/RESULTS.md.

Every variant is measured in the same run, interleaved round by round, and every figure is a median over the
rounds: network-only images/s on batches of 32, end-to-end images/s indexing clothing (decode + embed + store,
as `benchmarks/ingest.py` measures it), their ratio, search by uploaded photo, and mAP on Corel-1K and clothing
by the same protocol as the core section (full 1,280-d vectors, `pca=0`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.collect import machine_line, write_section
from lookalike.embedders.efficientnet import EfficientNetLiteEmbedder
from lookalike.evaluation import RetrievalScores, evaluate_index
from lookalike.images import DecodedImage
from lookalike.index import ImageIndex
from lookalike.ingest import prepare
from lookalike.reduction import DEFAULT_PLAN
from lookalike.settings import datasets_dir

ROUNDS = 3
BATCH = 32
TARGET_SPEEDUP, TARGET_RATIO, MAP_TOLERANCE = 1.5, 0.8, 0.005


@dataclass(frozen=True)
class Variant:
    label: str
    precision: str
    uint8_input: bool

    def embedder(self) -> EfficientNetLiteEmbedder:
        return EfficientNetLiteEmbedder(precision=self.precision, uint8_input=self.uint8_input)

    def new_index(self, folder: Path) -> ImageIndex:
        """An index through the Python door; the float input form has no door (it makes the same vectors and
        description), so that variant's embedder is put in after creation."""
        index = ImageIndex.create(folder, pca=0, dba=0, precision=self.precision)
        if index.embedder.uint8_input != self.uint8_input:  # type: ignore[attr-defined]
            index.embedder = self.embedder()
        warm(index.embedder)  # model load (and the one-time quantization) outside the timing
        return index


VARIANTS = (Variant("float32 (today)", "float32", False), Variant("float32 + uint8 input", "float32", True),
            Variant("int8, float input", "int8", False), Variant("int8 + uint8 input", "int8", True))


@dataclass
class Measured:
    network: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)
    upload_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)  # one decoder thread's work per photo
    scores: dict[str, RetrievalScores] = field(default_factory=dict)  # "corel1k raw", "clothing default", ...

    def median(self, name: str) -> float:
        return float(np.median(getattr(self, name)))


def warm(embedder: Any) -> None:
    grey = DecodedImage(Image.new("RGB", (256, 256), (127, 127, 127)), 256, 256)
    embedder.embed_batch(np.stack([embedder.preprocess(grey)]))


def network_rate(embedder: Any, batch: np.ndarray, batches: int = 6) -> float:
    """Images per second through the network alone (the batch already preprocessed)."""
    started = time.perf_counter()
    for _ in range(batches):
        embedder.embed_batch(batch)
    return batches * len(batch) / (time.perf_counter() - started)


def network_batches(embedders: dict[str, Any], count: int = BATCH) -> dict[str, np.ndarray]:
    """The same random pixels as each variant's network input."""
    pixels = np.random.default_rng(0).integers(0, 256, (count, 300, 300, 3), dtype=np.uint8)
    decoded = [DecodedImage(Image.fromarray(p), 300, 300) for p in pixels]
    return {label: np.stack([e.preprocess(d) for d in decoded]) for label, e in embedders.items()}


def upload_latency(index: ImageIndex, photos: list[Path]) -> float:
    times = []
    for photo in photos:
        started = time.perf_counter()
        index.search(photo.read_bytes(), k=10)
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.percentile(times, 50))


def quantization_seconds() -> float:
    """Seconds to make the int8 model with its uint8 input from the float export, in a fresh cache."""
    export = EfficientNetLiteEmbedder().onnx_path()
    with tempfile.TemporaryDirectory(prefix="lookalike-quantize-bench-") as fresh:
        (Path(fresh) / "onnx").mkdir()
        shutil.copy(export, Path(fresh) / "onnx" / export.name)
        previous = os.environ.get("LOOKALIKE_CACHE")
        os.environ["LOOKALIKE_CACHE"] = fresh
        try:
            started = time.perf_counter()
            EfficientNetLiteEmbedder(precision="int8").onnx_path()
            return time.perf_counter() - started
        finally:
            if previous is None:
                os.environ.pop("LOOKALIKE_CACHE")
            else:
                os.environ["LOOKALIKE_CACHE"] = previous


def decoder_ms(embedder: Any, photos: list[Path]) -> float:
    """Milliseconds of one decoder thread's work per photo (decode, crop, the network's input), alone."""
    started = time.perf_counter()
    for photo in photos:
        prepare(embedder, photo)
    return (time.perf_counter() - started) * 1e3 / len(photos)


def read_all(folder: Path) -> None:
    """Every photo's bytes once, so no variant pays for a cold page cache."""
    for path in folder.rglob("*.jpg"):
        path.read_bytes()


def measure(data: Path, work: Path) -> dict[str, Measured]:
    results = {v.label: Measured() for v in VARIANTS}
    embedders = {v.label: v.embedder() for v in VARIANTS}
    for embedder in embedders.values():
        warm(embedder)
    batches = network_batches(embedders)
    photos = sorted((data / "clothing" / "test").rglob("*.jpg"))[:100]
    read_all(data / "clothing")
    for round_ in range(ROUNDS):
        order = VARIANTS[round_ % len(VARIANTS):] + VARIANTS[:round_ % len(VARIANTS)]
        for _ in range(3):
            for variant in order:
                results[variant.label].network.append(network_rate(embedders[variant.label], batches[variant.label]))
        for variant in order:
            results[variant.label].decode_ms.append(decoder_ms(embedders[variant.label], photos))
        for variant in order:
            folder = work / f"clothing-{round_}-{VARIANTS.index(variant)}"
            with variant.new_index(folder) as index:
                report = index.add_folder(data / "clothing")
                results[variant.label].end_to_end.append(report.added / report.seconds)
                results[variant.label].upload_ms.append(upload_latency(index, photos))
                if round_ == 0:
                    results[variant.label].scores |= quality(index, data / "clothing")
            shutil.rmtree(folder, ignore_errors=True)
    for variant in VARIANTS:
        with variant.new_index(work / f"corel-{VARIANTS.index(variant)}") as index:
            index.add_folder(data / "corel1k")
            results[variant.label].scores |= quality(index, data / "corel1k")
    return results


def quality(index: ImageIndex, dataset: Path) -> dict[str, RetrievalScores]:
    """mAP of the full vectors ranked by cosine alone (the core section's first rows: the network's own quality),
    then of the index and search every door now makes by default: PCA 128, database-side augmentation over 10
    neighbours and the default query expansion."""
    raw = evaluate_index(index, dataset, expand="none")
    index.fit_pca(DEFAULT_PLAN["components"], whiten=DEFAULT_PLAN["whiten"], sample=DEFAULT_PLAN["sample"])
    index.augment()
    return {f"{dataset.name} raw": raw, f"{dataset.name} default": evaluate_index(index, dataset)}


def speed_table(results: dict[str, Measured]) -> str:
    today = results[VARIANTS[0].label]
    rows = ["| variant | network-only images/s | end-to-end images/s (clothing) | x today's end-to-end | "
            "end-to-end / network-only | decoder work per photo | ratio ceiling | search by uploaded photo, p50 |",
            "|---|---|---|---|---|---|---|---|"]
    for label, measured in results.items():
        network, end_to_end, decode = (measured.median(n) for n in ("network", "end_to_end", "decode_ms"))
        rows.append(f"| {label} | {network:.0f} | {end_to_end:.0f} | {end_to_end / today.median('end_to_end'):.2f} | "
                    f"{end_to_end / network:.2f} | {decode:.2f} ms | {ratio_ceiling(network, decode):.2f} | "
                    f"{measured.median('upload_ms'):.1f} ms |")
    return "\n".join(rows)


def ratio_ceiling(network: float, decode_ms: float) -> float:
    """The best end-to-end / network-only on these cores if decoding overlapped perfectly: the network's core time
    per photo over that plus the decoder's."""
    network_core_ms = (os.cpu_count() or 1) * 1e3 / network
    return network_core_ms / (network_core_ms + decode_ms)


QUALITY_COLUMNS = ("corel1k raw", "clothing raw", "corel1k default", "clothing default")


def quality_table(results: dict[str, Measured]) -> str:
    today = results[VARIANTS[0].label].scores
    rows = ["| variant | Corel-1K, full vectors | clothing, full vectors | Corel-1K, default index | "
            "clothing, default index |", "|---|---|---|---|---|"]
    for label, measured in results.items():
        cells = [f"{measured.scores[c].mean_average_precision:.4f} "
                 f"({measured.scores[c].mean_average_precision - today[c].mean_average_precision:+.4f})"
                 for c in QUALITY_COLUMNS]
        rows.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(rows)


def verdict(results: dict[str, Measured]) -> str:
    today, best = results[VARIANTS[0].label], results[VARIANTS[-1].label]
    speedup = best.median("end_to_end") / today.median("end_to_end")
    ratio = best.median("end_to_end") / best.median("network")
    drop = max(today.scores[c].mean_average_precision - best.scores[c].mean_average_precision
               for c in QUALITY_COLUMNS)
    return "\n".join([
        f"- end-to-end on clothing {speedup:.2f}x today's (target >= {TARGET_SPEEDUP}x): "
        f"{'met' if speedup >= TARGET_SPEEDUP else 'MISSED'}",
        f"- end-to-end / network-only {ratio:.2f} (target >= {TARGET_RATIO}): "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}",
        f"- largest mAP drop {drop:+.4f} over the four columns (target <= {MAP_TOLERANCE}): "
        f"{'met' if drop <= MAP_TOLERANCE else 'MISSED'}"])


def main() -> None:
    data = datasets_dir()
    load_before = os.getloadavg()
    making = quantization_seconds()
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-quantized-"))
    try:
        results = measure(data, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    int8_file = EfficientNetLiteEmbedder(precision="int8").onnx_path()
    float_file = EfficientNetLiteEmbedder().onnx_path()
    write_section("quantized", f"""## int8 EfficientNet-Lite0 and the uint8 input in the graph (benchmarks/quantized.py)

{machine_line()} Load average (1/5/15 min) {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} before,
{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after. ONNX Runtime (CPU), batch {BATCH}; {ROUNDS} rounds,
variants interleaved, medians (network-only: 3 x 6 batches a round; end-to-end: a new index of the 3,781
clothing photos a round, `pca=0, dba=0`: decode + embed + store). Upload search: decode + embed + search of 100
clothing photos, p50. Decoder work: `lookalike.ingest.prepare` on those 100 photos in one thread; the ratio
ceiling is the network's core time per photo over that plus the decoder work (perfect overlap on these cores).
mAP: Corel-1K 100 queries vs 900 gallery, clothing 372 test vs 3,068 train.

{speed_table(results)}

mAP (difference to float32 today). Full vectors: indexes with `pca=0, dba=0` searched with `expand="none"`, the
network's own quality, as the core section's first two rows. Default: the same indexes after PCA 128 and
database-side augmentation over 10 neighbours, searched with the default query expansion, as every door builds and
searches an index of 1,000+ images now.

{quality_table(results)}

Targets for int8 + uint8 input (issue 18):

{verdict(results)}

int8: ONNX Runtime static quantization, QDQ, weights int8 per channel, activations uint8 (min/max over the 144
calibration photos shipped in `lookalike/embedders/calibration/` and their mirror images), made once per machine
from the float export in {making:.1f} s and cached ({int8_file.stat().st_size / 1e6:.1f} MB against
{float_file.stat().st_size / 1e6:.1f} MB for float). uint8 input: the network takes the decoder's 224x224 crop as
uint8, channels last. For int8 the first QuantizeLinear (scale 1/128, zero point 127 from calibration) is exactly
the inverse of the scaling, so it is dropped and only a Transpose added, which ONNX Runtime's channels-last int8
convolutions absorb: the first convolution reads the decoder's pixels as they are. For float, a Cast, Sub, Div and
Transpose run in the graph instead of the decoder threads. The ratio ceiling says why 0.8 is out of reach for
int8 on 2 cores: decoding and resizing one photo (libjpeg-turbo at reduced scale, then Pillow's bilinear crop,
which the vectors depend on) costs more than a third of the int8 network's core time per photo.
""")


if __name__ == "__main__":
    main()
