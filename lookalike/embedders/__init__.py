"""Embedders: the only package that touches ONNX Runtime and torch."""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class ModelFamily:
    """One kind of model: the names it lists, which model names it answers, its ModelInfo and how it is made.
    A new kind of model is one family in FAMILIES (or `register_family`), not a branch in the functions below."""

    names: Callable[[], list[str]]  # as `lookalike models` lists them
    answers: Callable[[str], bool]
    info: Callable[[str], ModelInfo]
    make: Callable[..., Embedder]  # (model, layer, pool, weights, device, precision)


def available_models() -> list[str]:
    return [name for family in FAMILIES for name in family.names()]


def model_info(model: str) -> ModelInfo:
    """Layers, pooling and weights source of a model name; unknown names list the valid ones."""
    return _family_of(model).info(model)


def register_family(family: ModelFamily) -> None:
    """Make another kind of model available by name (before the built-in ones, so it may take over a name)."""
    FAMILIES.insert(0, family)


def _family_of(model: str) -> ModelFamily:
    found = next((family for family in FAMILIES if family.answers(model)), None)
    if found is None:
        raise RequestError(f"unknown model {model!r}; available: {', '.join(available_models())}")
    return found


def _lite_info(model: str) -> ModelInfo:
    from lookalike.embedders.pooling import POOLS

    return ModelInfo(model, lite_layers(model), "head", list(POOLS), "packaged (PyPI)")


def _classic_info(model: str) -> ModelInfo:
    from lookalike.embedders.classic import CLASSIC_MODELS
    from lookalike.embedders.pooling import POOLS

    spec = CLASSIC_MODELS[model]
    return ModelInfo(model, list(spec.layers), spec.default_layer, list(POOLS),
                     f"torchvision file ({' or '.join(spec.weight_files)}) or --weights; pools apply to "
                     f"{', '.join(spec.pooled)}")


def _fixed_info(model: str) -> ModelInfo:
    if model == "color-histogram":
        return ModelInfo(model, ["hsv"], "hsv", [], "none (handcrafted)")
    if model == "phash":
        return ModelInfo(model, ["dct"], "dct", [], "none (handcrafted)")
    return ModelInfo(f"{AUTOENCODER_PREFIX}PATH", ["bottleneck"], "bottleneck", [],
                     "your own: lookalike train-autoencoder PHOTOS_DIR --out PATH")


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
    return _family_of(model).make(model, layer, pool, weights, device, precision)


def _make_lite(model: str, layer: str | None, pool: str | None, weights: Path | None, device: str,
               precision: str | None) -> Embedder:
    return EfficientNetLiteEmbedder(model, weights=weights, device=device, layer=layer, pool=pool, precision=precision)


def _float32_only(model: str, precision: str | None) -> None:
    if precision not in (None, "float32"):
        raise RequestError(f"precision {precision!r} is for the EfficientNet-Lite models ({', '.join(VARIANTS)}); "
                           f"{model} runs in float32")


def _make_classic(model: str, layer: str | None, pool: str | None, weights: Path | None, device: str,
                  precision: str | None) -> Embedder:
    from lookalike.embedders.classic import ClassicCnnEmbedder

    _float32_only(model, precision)
    return ClassicCnnEmbedder(model, weights=weights, device=device, layer=layer, pool=pool)


def _make_text(model: str, layer: str | None, pool: str | None, weights: Path | None, device: str,
               precision: str | None) -> Embedder:
    from lookalike.embedders.clip import ClipEmbedder

    _float32_only(model, precision)
    return ClipEmbedder(model, weights=weights, device=device, layer=layer, pool=pool)


def _make_fixed(model: str, layer: str | None, pool: str | None, weights: Path | None, device: str,
                precision: str | None) -> Embedder:
    _float32_only(model, precision)
    info = model_info(model)
    if layer not in (None, info.default_layer) or pool not in (None, _fixed_pool(model)):
        raise RequestError(f"{info.name} has one layer ({info.default_layer}) and no --pool choice")
    return _fixed_embedder(model, device)


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


FAMILIES: list[ModelFamily] = [
    ModelFamily(lambda: sorted(VARIANTS), VARIANTS.__contains__, _lite_info, _make_lite),
    ModelFamily(lambda: list(CLASSIC), CLASSIC.__contains__, _classic_info, _make_classic),
    ModelFamily(lambda: list(HANDCRAFTED), HANDCRAFTED.__contains__, _fixed_info, _make_fixed),
    ModelFamily(lambda: [f"{AUTOENCODER_PREFIX}PATH"],
                lambda model: model.startswith(AUTOENCODER_PREFIX) or model == "autoencoder", _fixed_info, _make_fixed),
    ModelFamily(lambda: list(TEXT_MODELS), TEXT_MODELS.__contains__, _text_model_info, _make_text),
]

__all__ = ["DEFAULT_MODEL", "FAMILIES", "TEXT_MODELS", "Embedder", "Matrix", "ModelFamily", "ModelInfo", "Vector",
           "available_models", "get_embedder", "l2_normalise", "model_info", "register_family"]
