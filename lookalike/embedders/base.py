"""The embedder interface: pixels in, L2-normalised feature vectors out."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lookalike.images import DecodedImage

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]  # one vector per row


class Embedder(Protocol):
    """Turns decoded images into vectors; everything an index needs to know about a model."""

    name: str
    dimension: int
    input_side: int  # decoders may reduce images down to this shorter side

    def describe(self) -> dict[str, Any]:
        """Model name, version and preprocessing: recorded in an index and compared on query."""
        ...

    def preprocess(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        """One image as the network's input tensor (channels first), ready to batch."""
        ...

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        """A stacked batch of preprocessed images as L2-normalised vectors."""
        ...


def l2_normalise(vectors: Matrix) -> Matrix:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
