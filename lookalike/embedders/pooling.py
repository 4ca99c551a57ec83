"""Global pooling of convolutional feature maps (N, C, H, W) -> (N, C), inside exported graphs."""

from __future__ import annotations

from typing import Any

from lookalike.errors import RequestError

POOLS = ("avg", "max", "gem")
GEM_POWER = 3.0  # generalised mean: between average (p=1) and max (p -> infinity)


def check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise RequestError(f"unknown pooling {pool!r}; choose from {', '.join(POOLS)}")
    return pool


def global_pool(maps: Any, pool: str) -> Any:
    """avg, max, or GeM (p=3; negative activations count as zero)."""
    if pool == "avg":
        return maps.mean(dim=(2, 3))
    if pool == "max":
        return maps.amax(dim=(2, 3))
    if pool == "gem":
        return maps.clamp(min=1e-6).pow(GEM_POWER).mean(dim=(2, 3)).pow(1.0 / GEM_POWER)
    raise RequestError(f"unknown pooling {pool!r}; choose from {', '.join(POOLS)}")
