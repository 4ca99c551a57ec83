"""Execution provider selection (these machines have no GPU: the CUDA provider list is given)."""

from __future__ import annotations

import pytest

from lookalike.embedders.onnx_runtime import select_providers


def test_cpu_uses_the_cpu_provider_only():
    assert select_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_cuda_uses_the_cuda_provider_with_cpu_fallback_when_installed():
    providers = select_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_without_onnxruntime_gpu_says_what_to_install():
    with pytest.raises(RuntimeError, match="pip install onnxruntime-gpu"):
        select_providers("cuda", ["CPUExecutionProvider"])


def test_unknown_device_is_an_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        select_providers("tpu", ["CPUExecutionProvider"])
