"""A small convolutional autoencoder trained on the user's own photos, on the CPU, as an
unsupervised feature extractor: `lookalike train-autoencoder PHOTOS_DIR --out cae.pt`, then
`--model autoencoder:cae.pt`. The feature is the flattened bottleneck (8x8 maps), L2-normalised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders.base import Matrix, channels_first, l2_normalise
from lookalike.embedders.exported import ExportedNetwork, file_digest
from lookalike.errors import RequestError
from lookalike.images import DecodedImage, ImageError, load_image, resize_and_crop

PREFIX = "autoencoder:"
FORMAT = "lookalike-cae"
EXPORT_VERSION = 1
INPUT_SIDE = 128
WIDTHS = (16, 32, 64)  # encoder channels; each stage halves the side
LATENT_CHANNELS = 16  # bottleneck: 16 x 8 x 8 = 1024-d feature

Progress = Callable[[int, int], None]


@dataclass
class TrainingReport:
    """What one training run did: loss per epoch, and some images with their reconstructions."""

    model_file: Path
    images: int
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    originals: npt.NDArray[np.uint8] | None = None  # (n, side, side, 3)
    reconstructions: npt.NDArray[np.uint8] | None = None


def build_autoencoder(latent_channels: int = LATENT_CHANNELS) -> Any:
    """Encoder: 128 -> 8 with strided 3x3 convolutions; decoder mirrors it with transposed convolutions."""
    from torch import nn

    def down(c_in: int, c_out: int) -> list[Any]:
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    def up(c_in: int, c_out: int) -> list[Any]:
        return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    class ConvAutoencoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            a, b, c = WIDTHS
            self.encoder = nn.Sequential(*down(3, a), *down(a, b), *down(b, c),
                                         nn.Conv2d(c, latent_channels, 3, stride=2, padding=1))
            self.decoder = nn.Sequential(nn.ReLU(), *up(latent_channels, c), *up(c, b), *up(b, a),
                                         nn.ConvTranspose2d(a, 3, 4, stride=2, padding=1), nn.Sigmoid())

        def forward(self, pixels: Any) -> Any:
            return self.decoder(self.encoder(pixels))

    return ConvAutoencoder()


def _make_encoder_output() -> Any:
    import torch

    class Features(torch.nn.Module):
        def __init__(self, autoencoder: Any):
            super().__init__()
            self.encoder = autoencoder.encoder

        def forward(self, pixels: Any) -> Any:
            return self.encoder(pixels).flatten(1)

    return Features


def load_pixels(paths: Sequence[Path], side: int = INPUT_SIDE) -> npt.NDArray[np.uint8]:
    """Photos as (n, side, side, 3) uint8 centre crops; undecodable files are skipped."""
    crops = []
    for path in paths:
        try:
            crops.append(np.asarray(resize_and_crop(load_image(path, target_side=side).pixels, side)))
        except ImageError:
            continue
    if not crops:
        raise RequestError("no decodable photos to train on")
    return np.stack(crops)


def train_autoencoder(paths: Sequence[Path], out: Path, epochs: int = 10, batch_size: int = 32,
                      learning_rate: float = 2e-3, seed: int = 0, progress: Progress | None = None,
                      examples: int = 8) -> TrainingReport:
    """Train on the photos (mean squared reconstruction error, random horizontal flips), save to `out`."""
    import torch

    if epochs < 1:
        raise RequestError("epochs must be at least 1")
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pixels = load_pixels(paths)
    model = build_autoencoder().train()
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    batches = (len(pixels) + batch_size - 1) // batch_size
    losses = []
    for epoch in range(epochs):
        order, total = rng.permutation(len(pixels)), 0.0
        for number in range(batches):
            batch = _tensor(pixels[order[number * batch_size:(number + 1) * batch_size]])
            if rng.random() < 0.5:
                batch = batch.flip(3)
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
            if progress:  # in images seen, like indexing
                progress(epoch * len(pixels) + min((number + 1) * batch_size, len(pixels)), epochs * len(pixels))
        losses.append(total / len(pixels))
    save_autoencoder(model, out, len(pixels), losses)
    shown = pixels[:examples]
    with torch.no_grad():
        rebuilt = model.eval()(_tensor(shown)).permute(0, 2, 3, 1).numpy()
    return TrainingReport(Path(out), len(pixels), epochs, time.perf_counter() - started, losses, shown,
                          (rebuilt * 255).round().astype(np.uint8))


def _tensor(pixels: npt.NDArray[np.uint8]) -> Any:
    import torch

    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def save_autoencoder(model: Any, out: Path, images: int, losses: list[float]) -> None:
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.save({"format": FORMAT, "version": 1, "input_side": INPUT_SIDE, "latent_channels": LATENT_CHANNELS,
                "trained_on_images": images, "losses": losses, "state_dict": model.state_dict()}, partial)
    os.replace(partial, out)


def load_autoencoder(path: Path) -> Any:
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise RequestError(f"{path} is not a readable autoencoder file: {error}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise RequestError(f"{path} is not a lookalike autoencoder (make one with `lookalike train-autoencoder`)")
    model = build_autoencoder(int(content["latent_channels"]))
    model.load_state_dict(content["state_dict"], strict=True)
    return model.eval()


class AutoencoderEmbedder:
    """Bottleneck features of a trained autoencoder; preprocessing: centre crop 128, x/255."""

    input_side = INPUT_SIDE

    def __init__(self, model_file: Path, device: str = "cpu"):
        self.model_file = Path(model_file).resolve()
        if not self.model_file.is_file():
            raise FileNotFoundError(f"autoencoder file not found: {model_file} "
                                    "(train one with `lookalike train-autoencoder PHOTOS_DIR --out FILE`)")
        self.name = f"{PREFIX}{self.model_file}"
        self.dimension = LATENT_CHANNELS * (INPUT_SIDE // 2 ** (len(WIDTHS) + 1)) ** 2
        digest = file_digest(self.model_file)[:12]
        self.network = ExportedNetwork(f"autoencoder-{digest}-export{EXPORT_VERSION}", self._build, INPUT_SIDE,
                                       ("features",), device)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "version": f"weights-{file_digest(self.model_file)[:12]}/export-{EXPORT_VERSION}",
                "dimension": self.dimension, "layer": "bottleneck", "pool": "flatten",
                "preprocessing": f"exif-upright, rgb (alpha on white), shorter side {INPUT_SIDE} bilinear, "
                f"centre crop {INPUT_SIDE}, x/255"}

    def preprocess(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        return channels_first(resize_and_crop(image.pixels, INPUT_SIDE), std=255.0)

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        return l2_normalise(self.network.run(batch)[0])

    def _build(self) -> Any:
        return _make_encoder_output()(load_autoencoder(self.model_file)).eval()
