"""Embedders: the only package that touches ONNX Runtime and torch."""

from __future__ import annotations

from pathlib import Path

from lookalike.embedders.base import Embedder, Matrix, Vector, l2_normalise
from lookalike.embedders.efficientnet import VARIANTS, EfficientNetLiteEmbedder

DEFAULT_MODEL = "efficientnet-lite0"


def available_models() -> list[str]:
    return sorted(VARIANTS)


def get_embedder(model: str = DEFAULT_MODEL, weights: Path | None = None, device: str = "cpu") -> Embedder:
    """The embedder for a model name; unknown names list the valid ones."""
    if model in VARIANTS:
        return EfficientNetLiteEmbedder(model, weights=weights, device=device)
    raise ValueError(f"unknown model {model!r}; available: {', '.join(available_models())}")


__all__ = ["DEFAULT_MODEL", "Embedder", "Matrix", "Vector", "available_models", "get_embedder", "l2_normalise"]
