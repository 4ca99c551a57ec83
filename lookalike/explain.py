"""Why two photos are similar: heat maps over both, from the network's own feature maps (no extra model).

An average-pooled, L2-normalised vector is the mean of its map's cells over the mean's length, so the cosine of
two photos splits exactly into one share per cell: cell i of A gives <A_i, b> / (cells_A * |mean A|), where b is B's
unit vector, and the shares of A's cells add up to the cosine (the same for B against A). A cell whose features
are what B's photo holds too gets a large share; a background the two photos do not share gets little. The maps
are upsampled to each photo and drawn over it, side by side, with the cosine of the two maps' pools.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

Heat = npt.NDArray[np.float32]  # (height, width), one share of the similarity per pixel, the photo's size
Maps = npt.NDArray[np.float32]  # (channels, height, width)
SHOWN_HEIGHT = 320  # each photo's height in the picture
GAP = 8
CAPTION = 22


@dataclass(frozen=True)
class Explanation:
    """Heat maps over photo A and photo B (each the photo's size; larger where more of the similarity comes from),
    the cosine of their pooled feature maps, and the picture: both photos side by side, the heat over them."""

    heat_a: Heat
    heat_b: Heat
    similarity: float
    picture: Image.Image

    def png(self) -> bytes:
        """The picture as PNG bytes."""
        buffer = io.BytesIO()
        self.picture.save(buffer, "PNG")
        return buffer.getvalue()


def cell_shares(maps_a: Maps, maps_b: Maps) -> tuple[Heat, Heat, float]:
    """Each cell's share of the cosine of the two average-pooled maps (A's cells against B's vector and B's
    against A's), and the cosine itself (the sum of either map's shares)."""
    pooled_a, pooled_b = maps_a.mean(axis=(1, 2)), maps_b.mean(axis=(1, 2))
    length_a, length_b = max(float(np.linalg.norm(pooled_a)), 1e-12), max(float(np.linalg.norm(pooled_b)), 1e-12)
    shares_a = np.einsum("chw,c->hw", maps_a, pooled_b / length_b) / (maps_a[0].size * length_a)
    shares_b = np.einsum("chw,c->hw", maps_b, pooled_a / length_a) / (maps_b[0].size * length_b)
    similarity = float(np.dot(pooled_a, pooled_b) / (length_a * length_b))
    return shares_a.astype(np.float32), shares_b.astype(np.float32), similarity


def upsampled(shares: Heat, size: tuple[int, int]) -> Heat:
    """A cell map stretched smoothly over a photo of `size` (width, height), each pixel its cell's share per pixel."""
    image = Image.fromarray(shares.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC)
    return (np.asarray(image, np.float32) * shares.size / (size[0] * size[1])).astype(np.float32)


def explain_maps(photo_a: Image.Image, maps_a: Maps, photo_b: Image.Image, maps_b: Maps) -> Explanation:
    """The explanation of two photos from their feature maps (each the map of the whole photo)."""
    shares_a, shares_b, similarity = cell_shares(maps_a, maps_b)
    heat_a, heat_b = upsampled(shares_a, photo_a.size), upsampled(shares_b, photo_b.size)
    return Explanation(heat_a, heat_b, similarity, side_by_side(photo_a, heat_a, photo_b, heat_b, similarity))


def peak(heat: Heat) -> tuple[int, int]:
    """The (x, y) pixel where a heat map is highest."""
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(column), int(row)


def overlay(photo: Image.Image, heat: Heat) -> Image.Image:
    """The photo with its heat drawn over it: dimmed where little of the similarity is, warm where much is."""
    low, high = float(np.percentile(heat, 1)), float(heat.max())
    level = np.clip((heat - low) / max(high - low, 1e-12), 0.0, 1.0)
    colours = np.asarray(_warm_colours(level), np.float32)
    base = np.asarray(photo.convert("RGB"), np.float32)
    weight = (0.25 + 0.5 * level)[..., None]
    shown = base * (0.45 + 0.55 * level[..., None]) * (1 - weight) + colours * weight
    return Image.fromarray(np.clip(shown, 0, 255).astype(np.uint8))


def _warm_colours(level: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Blue (none of the similarity) through yellow to red (most), per pixel."""
    red = np.clip(2.0 * level, 0, 1)
    green = np.clip(2.0 - 2.0 * level, 0, 1) * np.clip(2.0 * level, 0, 1)
    blue = np.clip(1.0 - 2.0 * level, 0, 1)
    return np.stack([red, green, blue], axis=-1) * 255.0


def side_by_side(photo_a: Image.Image, heat_a: Heat, photo_b: Image.Image, heat_b: Heat,
                 similarity: float) -> Image.Image:
    """Both photos with their heat, at one height, side by side, captioned with the similarity."""
    shown = [_at_height(overlay(photo, heat)) for photo, heat in ((photo_a, heat_a), (photo_b, heat_b))]
    width = shown[0].width + GAP + shown[1].width
    picture = Image.new("RGB", (width, SHOWN_HEIGHT + CAPTION), "white")
    picture.paste(shown[0], (0, CAPTION))
    picture.paste(shown[1], (shown[0].width + GAP, CAPTION))
    ImageDraw.Draw(picture).text((4, 5), f"why similar: warm regions give most of the similarity "
                                         f"(cosine of the feature maps {similarity:.3f})", fill="black")
    return picture


def _at_height(image: Image.Image) -> Image.Image:
    width = max(1, round(image.width * SHOWN_HEIGHT / image.height))
    return image.resize((width, SHOWN_HEIGHT), Image.Resampling.BILINEAR)
