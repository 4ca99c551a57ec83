"""ONNX Runtime sessions: the one place that chooses execution providers and threads.

ONNX Runtime itself is imported when the first session opens, so a search by id or `--help` never loads it.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import RequestError

if TYPE_CHECKING:
    import onnxruntime as ort


def select_providers(device: str = "cpu", available: list[str] | None = None) -> list[str]:
    """Execution providers for a device name; 'cuda' needs onnxruntime-gpu and says so."""
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                "device 'cuda' needs ONNX Runtime's CUDA provider: pip install onnxruntime-gpu "
                f"(available here: {', '.join(available)})"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise RequestError(f"unknown device {device!r}; choose 'cpu' or 'cuda'")


def open_session(model_path: Path, device: str = "cpu", threads: int | None = None) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # LOOKALIKE_ONNX_THREADS: a thread budget when several sessions share a machine (e.g. Ray actors)
    options.intra_op_num_threads = threads or int(os.environ.get("LOOKALIKE_ONNX_THREADS") or 0) or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Worker threads that spin between runs take the cores from the decoder threads while indexing (clothing on 2
    # cores: 174 -> 197 images/s without spinning; the network alone is no slower) and from FAISS while serving
    # (web/tuning.py). LOOKALIKE_ORT_SPINNING=1 turns it back on for a machine that only runs the network.
    if os.environ.get("LOOKALIKE_ORT_SPINNING", "0") != "1":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), options, providers=select_providers(device))


class CachedModel:
    """A model file in the cache (`onnx_path()`, made the first time) whose session opens once, on first use, for
    every thread; its one input `pixels` is fed as `input_type`."""

    name = "the model"  # how the one-line notice of a first preparation names it
    prepare_seconds: int | None = None  # about how long that preparation takes (export, quantization), if known

    def __init__(self, device: str = "cpu", input_type: type[np.generic] = np.float32):
        self.device, self.input_type = device, input_type
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    def onnx_path(self) -> Path:
        raise NotImplementedError

    def is_prepared(self) -> bool:
        """Whether onnx_path() is already in the cache (nothing to export or derive)."""
        return True

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        return self.session.run(None, {"pixels": np.ascontiguousarray(batch, dtype=self.input_type)})

    @property
    def session(self) -> ort.InferenceSession:
        with self._lock:
            if self._session is None:
                if not self.is_prepared():
                    announce_preparation(self.name, self.prepare_seconds)
                self._session = open_session(self.onnx_path(), self.device)
            return self._session


def announce_preparation(name: str, seconds: int | None) -> None:
    """One line before a long first export, so a first index does not look stuck."""
    about = f", about {seconds} s" if seconds else ""
    print(f"lookalike: preparing {name} for this machine (once{about}) ...", file=sys.stderr, flush=True)
