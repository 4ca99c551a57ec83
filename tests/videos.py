"""Small videos the tests make with PyAV: scenes of distinct patterns, a few seconds each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9"}


def scene(number: int, side: int = 64) -> np.ndarray:
    """An RGB picture unlike the other scenes' (stripes, a checkerboard, a disc, ... in different colours)."""
    y, x = np.mgrid[0:side, 0:side] / side
    palettes = [((220, 30, 30), (250, 250, 250)), ((20, 160, 40), (10, 10, 10)), ((30, 40, 220), (250, 220, 40)),
                ((240, 130, 0), (90, 0, 120)), ((0, 200, 200), (120, 60, 20))]
    patterns = [np.floor(y * 8) % 2 == 0, (np.floor(x * 4) + np.floor(y * 4)) % 2 == 0,
                (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1, np.floor(x * 6) % 2 == 0, x + y < 1]
    first, second = palettes[number % len(palettes)]
    mask = patterns[number % len(patterns)]
    return np.where(mask[..., None], np.array(first, np.uint8), np.array(second, np.uint8)).astype(np.uint8)


def write_still(path: Path, number: int, side: int = 96) -> Path:
    """One scene as a photo (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene(number, side)).save(path)
    return path


def write_video(path: Path, scenes: Sequence[int], seconds: float = 2.0, fps: int = 10, side: int = 64) -> Path:
    """A video of the given scenes in turn, `seconds` each (codec by extension: H.264, or VP9 for webm)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODECS[path.suffix.lower()], rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for number in scenes:
            frame = av.VideoFrame.from_ndarray(scene(number, side), format="rgb24")
            for _ in range(round(seconds * fps)):
                container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
