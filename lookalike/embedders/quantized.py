"""int8 networks: ONNX Runtime static quantization, calibrated on photos that ship with lookalike.

The EfficientNet-Lite models were designed for integer inference (ReLU6, no squeeze-and-excitation). Weights are
quantized per output channel to int8, activations to uint8 from the ranges (min/max) they take on the packaged
calibration photos and their mirror images, in ONNX Runtime's QDQ format (u8s8, which its VNNI kernels run).
Everything the result depends on (the float export, QUANTIZATION_VERSION with these settings, the calibration
photos' digest) is in the cached file's name and the index's recorded version, so an index and its queries use
the same int8 model on any machine with the installed package.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import RequestError

PRECISIONS = ("float32", "int8")
QUANTIZATION_VERSION = 1  # bump when the settings below change: the int8 models get a new version
CALIBRATION_PHOTOS = Path(__file__).resolve().parent / "calibration"
CALIBRATION_BATCH = 16

Tensor = npt.NDArray[np.float32]


def check_precision(precision: str | None) -> str:
    """The precision asked for (None: float32), or a ValueError listing the valid ones."""
    chosen = precision or "float32"
    if chosen not in PRECISIONS:
        raise RequestError(f"unknown precision {chosen!r}; choose from {', '.join(PRECISIONS)}")
    return chosen


INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"}  # x86 VNNI / AMX, Arm dot product


def default_precision(device: str = "cpu", cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The precision a new EfficientNet-Lite index gets: int8 on a CPU with integer dot-product instructions, where
    it embeds about 1.9x as fast with mAP within 0.001 of float32 (Corel-1K, clothing); float32 elsewhere (without
    them ONNX Runtime's u8s8 kernels can saturate) and on GPUs."""
    if device != "cpu":
        return "float32"
    try:
        words = set(cpuinfo.read_text(errors="replace").split())
    except OSError:  # not Linux: nothing to read the instructions from
        return "float32"
    return "int8" if words & INT8_DOT_FLAGS else "float32"


def calibration_photos() -> list[Path]:
    photos = sorted(CALIBRATION_PHOTOS.glob("*.jpg"))
    if not photos:
        raise RuntimeError(f"the calibration photos for int8 models are missing from {CALIBRATION_PHOTOS}: "
                           "reinstall lookalike")
    return photos


@functools.lru_cache(maxsize=1)
def calibration_digest() -> str:
    """One digest of the calibration photos' names and bytes: part of every int8 model's version."""
    digest = hashlib.sha256()
    for photo in calibration_photos():
        digest.update(photo.name.encode() + b"\0" + photo.read_bytes())
    return digest.hexdigest()


def quantization_tag() -> str:
    """What an int8 model is made with, for its cache name and version."""
    return f"int8-q{QUANTIZATION_VERSION}-cal{calibration_digest()[:12]}"


def calibration_batches(tensor_of: Callable[[Path], Tensor]) -> Iterator[Tensor]:
    """The calibration photos, each as the network's float input and mirrored, in batches."""
    tensors: list[Tensor] = []
    for photo in calibration_photos():
        tensor = tensor_of(photo)
        tensors += [tensor, np.ascontiguousarray(tensor[..., ::-1])]
        if len(tensors) >= CALIBRATION_BATCH:
            yield np.stack(tensors)
            tensors = []
    if tensors:
        yield np.stack(tensors)


class _Batches:
    """ONNX Runtime's CalibrationDataReader over our batches (its protocol: get_next until None)."""

    def __init__(self, batches: Iterator[Tensor], input_name: str):
        self.batches = batches
        self.input_name = input_name

    def get_next(self) -> dict[str, Tensor] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_network(source: Path, target: Path, tensor_of: Callable[[Path], Tensor]) -> None:
    """Write the int8 version of the float network `source` (input `pixels`) to `target`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="lookalike-quantize-", dir=target.parent) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))  # shapes inferred and constants folded, as the quantizer wants
        reader: Any = _Batches(calibration_batches(tensor_of), "pixels")
        quantize_static(str(prepared), str(target), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
