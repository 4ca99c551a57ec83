"""ImageIndex.explain's half: two photos (files, bytes or indexed ids) as the index's network sees them, and the heat
maps of what makes them similar (lookalike.explain), drawn into a picture and written where asked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lookalike.embedders.maps import spatial
from lookalike.errors import NotFoundError, RequestError
from lookalike.explain import Explanation, explain_maps
from lookalike.images import DecodedImage, load_image

Photo = str | os.PathLike[str] | bytes | int  # a file, its bytes or an indexed id
EXPLAIN_SIDE = 480  # photos are read with their shorter side reduced to about this (the picture's detail)


class ExplainsPairs:
    """ImageIndex's explain verb (ImageIndex derives from this; its `embedder` and `record` are what it reads)."""

    embedder: Any

    def record(self, image_id: int) -> Any: ...

    def explain(self, a: Photo, b: Photo, out: str | os.PathLike[str] | None = None) -> Explanation:
        """Why two photos (files, bytes or indexed ids) are similar. Heat maps over both (`heat_a`, `heat_b`) from the
        index's own network, their `similarity` and the `picture` of both, also written to `out` as PNG when given.
        An index whose model has no spatial feature map (CLIP, handcrafted) raises NoFeatureMapError."""
        network = spatial(self.embedder)
        photos = [decoded(self, photo) for photo in (a, b)]
        maps = [network.feature_map(photo) for photo in photos]
        explanation = explain_maps(photos[0].pixels, maps[0], photos[1].pixels, maps[1])
        if out is not None:
            Path(out).write_bytes(explanation.png())
        return explanation


def decoded(index: ExplainsPairs, photo: Photo) -> DecodedImage:
    """A photo read upright: an indexed id's file, a file, or uploaded bytes (bad images raise ImageError)."""
    if isinstance(photo, bool):
        raise RequestError(f"a photo to explain is a file, its bytes or an indexed id, not {photo!r}")
    if isinstance(photo, int):
        record = index.record(photo)
        if record is None:
            raise NotFoundError(f"no image with id {photo} in the index")
        photo = record.path
    if not isinstance(photo, bytes | str | os.PathLike):
        raise RequestError(f"a photo to explain is a file, its bytes or an indexed id, not {photo!r}")
    return load_image(photo, target_side=EXPLAIN_SIDE)
