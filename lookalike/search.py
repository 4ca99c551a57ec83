"""Similarity scores and search results: higher always means more alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class Match:
    id: int
    path: str
    score: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class SearchResult:
    """The matches, best first, and where the time went (milliseconds)."""

    matches: list[Match]
    query: str
    metric: str
    timings: dict[str, float] = field(default_factory=dict)
    predicted_class: dict[str, float] | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "query": self.query,
            "metric": self.metric,
            "timings_ms": {name: round(ms, 3) for name, ms in self.timings.items()},
            "predicted_class": self.predicted_class,
            "matches": [
                {"id": m.id, "path": m.path, "score": round(m.score, 6), "labels": m.labels} for m in self.matches
            ],
        }


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


def scores_from_inner_products(inner: npt.NDArray[np.float32], metric: str) -> npt.NDArray[np.float32]:
    """Cosine is the inner product of unit vectors; Euclidean is reported as 1 / (1 + distance)."""
    check_metric(metric)
    if metric == "cosine":
        return inner
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * inner))
    return (1.0 / (1.0 + distance)).astype(np.float32)
