"""Networks made from another cached model file (quantized to int8, the pixel input folded in), run by ONNX Runtime.

A derived file is a pure function of its source file and of settings the caller puts in its cache name, so it is
made once per machine, atomically, as `<cache>/onnx/<cache_name>.onnx`, like the export it is made from.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.embedders.onnx_runtime import CachedModel
from lookalike.settings import cache_dir

MakeModel = Callable[[Path, Path], None]  # (source file, file to write)


class DerivedNetwork(CachedModel):
    """The model `make` writes from `source()`'s file, cached under `cache_name`; its input `pixels` of `input_type`."""

    def __init__(self, cache_name: str, source: Callable[[], Path], make: MakeModel,
                 input_type: type[np.generic] = np.float32, device: str = "cpu"):
        super().__init__(device, input_type)
        self.cache_name = cache_name
        self.source = source
        self.make = make

    def is_prepared(self) -> bool:
        return (cache_dir() / "onnx" / f"{self.cache_name}.onnx").exists()

    def onnx_path(self) -> Path:
        """The derived model in the cache, made (from the source, made first if need be) the first time."""
        path = cache_dir() / "onnx" / f"{self.cache_name}.onnx"
        if not path.exists():
            source = self.source()
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.partial-{os.getpid()}-{threading.get_ident()}.onnx")
            try:
                self.make(source, partial)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
        return path
