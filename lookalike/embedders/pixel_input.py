"""The decoded pixels as the network's input: the cast, scaling and channels-first layout done inside the graph.

A network exported for float tensors (N, 3, side, side) of (pixel - mean) / std is given nodes in front of it and
takes the decoder's crop as it is: uint8 (N, side, side, 3). The decoder threads, which share the cores with the
network, hand over the crop instead of building a float tensor four times its size. For a float network the nodes
are Cast, Sub, Div and Transpose. For an int8 network whose first QuantizeLinear undoes the scaling exactly, that
node goes and only a Transpose comes in; ONNX Runtime runs int8 convolutions channels last, so it drops the
Transpose too and the first convolution reads the decoder's pixels as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.embedders.onnx_runtime import open_session

TOLERANCE = 1e-3  # largest difference accepted between the folded network and the original on the same pixels
FOLDED_INPUT = "pixels"


def channels_last_pixels(image: Any) -> npt.NDArray[np.uint8]:
    """An RGB crop as the folded network takes it: contiguous uint8 (height, width, 3)."""
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def fold_pixel_input(source: Path, target: Path, mean: float, std: float) -> None:
    """Write `source` (float input `pixels`, NCHW) to `target` taking uint8 NHWC pixels, after checking that both
    give the same outputs on the same random pixels."""
    import onnx  # here: importing onnx takes most of a second, and only making the file needs it
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    original = graph.input[0]
    channels, side = (original.type.tensor_type.shape.dim[i].dim_value for i in (1, 2))
    quantized = _identity_quantization(graph, original.name, mean, std)
    if quantized is not None:  # an int8 network whose first step makes (p - mean) / std back into p: skip both
        front = [helper.make_node("Transpose", [FOLDED_INPUT], [quantized.output[0]], perm=[0, 3, 1, 2])]
        graph.node.remove(quantized)
    else:  # scaled channels last (elementwise, any layout), then channels first as the network expects
        _rename_input(graph, original.name, "pixels_scaled")
        graph.initializer.extend([numpy_helper.from_array(np.array(mean, np.float32), "pixel_mean"),
                                  numpy_helper.from_array(np.array(std, np.float32), "pixel_std")])
        front = [helper.make_node("Cast", [FOLDED_INPUT], ["pixels_float"], to=TensorProto.FLOAT),
                 helper.make_node("Sub", ["pixels_float", "pixel_mean"], ["pixels_centred"]),
                 helper.make_node("Div", ["pixels_centred", "pixel_std"], ["pixels_nhwc"]),
                 helper.make_node("Transpose", ["pixels_nhwc"], ["pixels_scaled"], perm=[0, 3, 1, 2])]
    nodes = [*front, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.remove(original)
    graph.input.insert(0, helper.make_tensor_value_info(FOLDED_INPUT, TensorProto.UINT8,
                                                        ["batch", side, side, channels]))
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    check_folded(source, target, mean, std, side)


def _identity_quantization(graph: Any, name: str, mean: float, std: float) -> Any:
    """The QuantizeLinear that is the input's only use, when it maps (p - mean) / std exactly back to uint8 p
    (scale 1/std, zero point mean: what calibration finds on photos with black and white pixels); else None."""
    from onnx import numpy_helper

    users = [node for node in graph.node if name in node.input]
    if len(users) != 1 or users[0].op_type != "QuantizeLinear":
        return None
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    scale, zero_point = (constants.get(argument) for argument in users[0].input[1:3])
    if scale is None or zero_point is None or zero_point.dtype != np.uint8:
        return None
    return users[0] if scale.size == 1 and float(scale) == 1.0 / std and int(zero_point) == mean else None


def _rename_input(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def check_folded(source: Path, target: Path, mean: float, std: float, side: int) -> None:
    """Refuse a folded network whose outputs differ from the original's on the same pixels."""
    pixels = np.random.default_rng(0).integers(0, 256, (2, side, side, 3), dtype=np.uint8)
    tensors = ((pixels.transpose(0, 3, 1, 2).astype(np.float32) - np.float32(mean)) / np.float32(std))
    expected = open_session(source).run(None, {"pixels": np.ascontiguousarray(tensors)})
    actual = open_session(target).run(None, {FOLDED_INPUT: pixels})
    error = max(float(np.abs(e - a).max()) for e, a in zip(expected, actual, strict=True))
    if error > TOLERANCE:
        target.unlink(missing_ok=True)
        raise RuntimeError(f"the network with its pixel input folded in differs by {error:.2e}; refusing to use it")
