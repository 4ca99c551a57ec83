"""What defines an index's vectors, and the one call that rebuilds the embedder from it.

An index records its embedder's description in the manifest (model, weights digest and export version,
layer, pool, dimension, preprocessing with the input size, and precision when int8). `EmbedderSpec` turns that
record (or the user's choice for a new index) back into an embedder; the CLI, the server, Ray workers and reopened
indexes all build theirs this way, and every one is checked against the record: a different model,
layer, pool, weights file, export version or precision is a `ModelMismatchError`, never silently mixed vectors.
Only a CLIP-family model embeds words as well (`text_tower`); any other index refuses a text query clearly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lookalike.embedders import DEFAULT_MODEL, TEXT_MODELS, Embedder, Matrix, get_embedder
from lookalike.errors import RequestError

DEFINING_KEYS = ("model", "version", "dimension", "layer", "pool", "preprocessing", "precision")


class ModelMismatchError(Exception):
    """A vector or model that is not the one this index was built with."""


class NoTextTowerError(RequestError):
    """A text query (or zero-shot labels) for an index whose model embeds images only."""


class TextTower(Protocol):
    """An embedder that also turns texts into vectors comparable with its images' (CLIP, SigLIP)."""

    def embed_texts(self, texts: Sequence[str]) -> Matrix:
        """L2-normalised vectors, one row per text."""
        ...


def has_text_tower(embedder: Embedder) -> bool:
    return callable(getattr(embedder, "embed_texts", None))


def text_tower(embedder: Embedder) -> TextTower:
    """The embedder as a text tower; a clear NoTextTowerError when its model has none."""
    if not has_text_tower(embedder):
        raise NoTextTowerError(f"the index was built by {embedder.name}, which embeds images only, so it cannot be "
                               f"searched by words: index the photos again with a text-and-image model "
                               f"({', '.join(TEXT_MODELS)}; see `lookalike models`) into another folder")
    return embedder  # type: ignore[return-value]


@dataclass(frozen=True)
class EmbedderSpec:
    """A model and how it is tapped; `weights` is a local file, or a checkpoint folder for a CLIP-family model
    (None: the packaged, cached or fetched one)."""

    model: str = DEFAULT_MODEL
    layer: str | None = None
    pool: str | None = None
    weights: Path | None = None
    device: str = "cpu"
    precision: str | None = None  # None: float32; "int8" (EfficientNet-Lite): the quantized network

    @classmethod
    def of_index(cls, description: dict[str, Any], weights: str | Path | None = None,
                 device: str = "cpu") -> EmbedderSpec:
        """The spec an index's manifest records (`weights` overrides the recorded local file); a record without
        `precision` (every index made before int8 models, and every float one) is float32."""
        chosen = weights or description.get("weights_file")
        return cls(description["model"], description.get("layer"), description.get("pool"),
                   Path(chosen) if chosen else None, device, description.get("precision"))

    def build(self) -> Embedder:
        return get_embedder(self.model, layer=self.layer, pool=self.pool, weights=self.weights, device=self.device,
                            precision=self.precision)

    def build_matching(self, description: dict[str, Any]) -> Embedder:
        """The embedder, refused unless it makes exactly the vectors `description` records."""
        embedder = self.build()
        check_same_vectors(description, embedder.describe())
        return embedder


def check_same_vectors(recorded: dict[str, Any], current: dict[str, Any], whose: str = "query") -> None:
    """Raise ModelMismatchError naming every defining setting in which two embedders differ."""
    different = [k for k in DEFINING_KEYS if recorded.get(k) != current.get(k)]
    if different:
        details = "; ".join(f"{k}: index {recorded.get(k)!r} vs {whose} {current.get(k)!r}" for k in different)
        raise ModelMismatchError(f"the index was built by a different model ({details})")
