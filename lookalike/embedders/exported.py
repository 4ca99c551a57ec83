"""Torch networks exported once to ONNX (checked against torch), cached, and run with ONNX Runtime.

Every torch-defined embedder shares this: the graph is exported the first time it is needed,
compared with the torch output on a random batch, and stored in the cache under a name that
carries the weights digest, so a changed weights file never reuses a stale export.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.embedders.onnx_runtime import CachedModel, open_session
from lookalike.settings import cache_dir

TOLERANCE = 1e-3  # largest difference between torch and ONNX outputs accepted


class ExportedNetwork(CachedModel):
    """A torch module built on demand, exported to `<cache>/onnx/<cache_name>.onnx`, run by ONNX Runtime."""

    def __init__(self, cache_name: str, build: Callable[[], Any], input_side: int,
                 output_names: Sequence[str] = ("features",), device: str = "cpu", any_side: bool = False):
        super().__init__(device)
        self.cache_name = cache_name
        self.build = build
        self.input_side = input_side
        self.output_names = tuple(output_names)
        self.any_side = any_side  # height and width free (a feature map), not only the batch

    def is_prepared(self) -> bool:
        return (cache_dir() / "onnx" / f"{self.cache_name}.onnx").exists()

    def onnx_path(self) -> Path:
        """The exported model in the cache, exporting (and validating) it the first time."""
        path = cache_dir() / "onnx" / f"{self.cache_name}.onnx"
        if not path.exists():
            export_module(self.build(), self.input_side, path, self.output_names, self.any_side)
        return path


def export_module(module: Any, input_side: int, path: Path, output_names: Sequence[str] = ("features",),
                  any_side: bool = False) -> None:
    """Export a torch module taking `pixels` (N,3,side,side) to ONNX, atomically, after checking it; `any_side`
    leaves the height and width free (a fully convolutional module whose outputs are maps)."""
    import torch

    module = module.eval()
    sample = torch.randn(2, 3, input_side, input_side)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{threading.get_ident()}")
    dynamic = {name: {0: "batch"} for name in ("pixels", *output_names)}
    if any_side:  # each tensor's own height and width (a map's are the input's divided by the network's stride)
        dynamic = {name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in dynamic}
    with warnings.catch_warnings():
        # The TorchScript exporter is the one whose graphs the int8 and uint8-input files are derived from
        # (quantized.py, pixel_input.py); torch says it is legacy, and that it left some Slice ops unfolded (ONNX
        # Runtime folds constants when it opens the file). Every export is checked against torch below, so these
        # notes are for torch's developers, not for a user indexing photos.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning, "torch.onnx")
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(module, (sample,), str(partial), input_names=["pixels"], output_names=list(output_names),
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    validate_export(module, partial, sample)
    partial.replace(path)


def validate_export(module: Any, onnx_file: Path, sample: Any) -> None:
    """Refuse an export whose first output differs from torch's by more than TOLERANCE."""
    import torch

    with torch.no_grad():
        expected = module(sample)
    expected = (expected[0] if isinstance(expected, tuple | list) else expected).numpy()
    actual = open_session(onnx_file).run(None, {"pixels": sample.numpy()})[0]
    error = float(np.abs(expected - actual).max())
    if error > TOLERANCE:
        onnx_file.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export differs from torch by {error:.2e}; refusing to use it")


@functools.lru_cache(maxsize=32)
def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def network_description(name: str, weights: Path, export_version: int, dimension: int, layer: str, pool: str,
                        input_side: int, scaling: str) -> dict[str, Any]:
    """What an index records about a pretrained CNN: compared on open and on every query."""
    return {
        "model": name,
        "version": f"weights-{file_digest(weights)[:12]}/export-{export_version}",
        "dimension": dimension,
        "layer": layer,
        "pool": pool,
        "preprocessing": f"exif-upright, rgb (alpha on white), shorter side {input_side} bilinear, "
        f"centre crop {input_side}, {scaling}",
    }
