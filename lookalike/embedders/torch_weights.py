"""Loading torchvision-style weight files: from --weights or torch's standard hub cache, checked tensor by tensor."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookalike.errors import RequestError

SHOWN = 6  # mismatching tensors named in an error


def hub_checkpoints() -> Path:
    """torch's download cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    torch_home = os.environ.get("TORCH_HOME") or cache / "torch"
    return Path(torch_home) / "hub" / "checkpoints"


def find_weights(model: str, file_names: Sequence[str], weights: Path | None = None) -> Path:
    """The given weights file, or the first standard file present in the hub cache; else say what to do."""
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"weights file not found: {weights}")
        return weights
    for name in file_names:
        candidate = hub_checkpoints() / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no weights for {model}: this machine cannot download them. Put torchvision's ImageNet file "
        f"{' or '.join(file_names)} in {hub_checkpoints()} (copy it from a machine with internet), "
        f"or pass --weights FILE"
    )


def load_checked(module: Any, weights: Path, model: str) -> Any:
    """Load a state_dict into module; a file for another architecture fails naming the tensors that differ."""
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise RequestError(f"{weights} is not a readable torch weights file: {error}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RequestError(f"{weights} does not hold a state_dict (got {type(state).__name__})")
    problems = state_dict_mismatches(module.state_dict(), state)
    if problems:
        shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
        raise RequestError(f"weights file {weights} does not fit {model}: {shown}")
    module.load_state_dict(state, strict=True)
    return module.eval()


def state_dict_mismatches(expected: dict[str, Any], given: dict[str, Any]) -> list[str]:
    missing = [f"missing {k}" for k in expected if k not in given]
    unexpected = [f"unexpected {k}" for k in given if k not in expected]
    shapes = [f"{k} has shape {tuple(given[k].shape)}, {tuple(v.shape)} expected" for k, v in expected.items()
              if k in given and hasattr(given[k], "shape") and tuple(given[k].shape) != tuple(v.shape)]
    return shapes + missing + unexpected
