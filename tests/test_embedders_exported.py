"""The shared torch -> ONNX export: validated against torch, cached by name, refused when it differs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.embedders.exported import ExportedNetwork, export_module


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, pixels):
        return self.conv(pixels).amax(dim=(2, 3))


class Noisy(TinyNet):
    def forward(self, pixels):
        return super().forward(pixels) + torch.randn(pixels.shape[0], 4)


def test_exported_network_matches_torch_and_builds_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model, builds = TinyNet().eval(), []
    network = ExportedNetwork("tiny", lambda: builds.append(1) or model, input_side=16)
    batch = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(network.run(batch)[0], expected, atol=1e-5)
    again = ExportedNetwork("tiny", lambda: pytest.fail("the cached export must be reused"), input_side=16)
    assert again.run(batch)[0].shape == (3, 4) and builds == [1]
    assert (tmp_path / "onnx" / "tiny.onnx").exists()


def test_export_that_differs_from_torch_is_refused_and_not_kept(tmp_path):
    with pytest.raises(RuntimeError, match="differs from torch"):
        export_module(Noisy(), 16, tmp_path / "noisy.onnx")
    assert list(tmp_path.iterdir()) == []
