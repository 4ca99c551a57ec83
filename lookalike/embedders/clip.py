"""CLIP-family embedders (OpenAI CLIP, SigLIP): an image tower and a text tower into one space.

The checkpoint is a Hugging Face folder (config.json, model.safetensors, tokenizer.json), read by
`transformers`' CLIPModel or SiglipModel, which need neither torchvision nor another torch. Each tower is
exported once to ONNX (checked against torch), cached under a name carrying the folder's digest, and run with
ONNX Runtime; texts are tokenised by the `tokenizers` library from a copy of the checkpoint's tokenizer fixed
to the tower's length, so searching by words needs neither torch nor transformers once the export exists.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from lookalike.embedders.base import Matrix, channels_first, l2_normalise
from lookalike.embedders.exported import TOLERANCE, ExportedNetwork
from lookalike.embedders.hub import CHECKPOINTS, find_checkpoint_folder, weights_file
from lookalike.embedders.onnx_runtime import open_session
from lookalike.errors import RequestError
from lookalike.images import DecodedImage
from lookalike.settings import cache_dir

EXPORT_VERSION = 1  # bump when an exported graph or the tokenizer copy changes
LAYER = "projection"  # the joint image-text embedding, the only tap
FAMILIES = {  # model_type -> (defaults of config.json, of preprocessor_config.json), as transformers has them
    "clip": ({"image_size": 224, "patch_size": 32, "hidden_size": 768, "projection_dim": 512, "text_length": 77,
              "vocab_size": 49408},
             {"do_center_crop": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
              "image_std": [0.26862954, 0.26130258, 0.27577711]}),
    "siglip": ({"image_size": 224, "patch_size": 16, "hidden_size": 768, "text_length": 64, "vocab_size": 32000},
               {"do_center_crop": False, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
}
POOLS = {"clip": "cls", "siglip": "attention"}  # how each family's vision tower pools its tokens


@dataclass(frozen=True)
class Layout:
    """What a checkpoint folder says about its towers and preprocessing (read from its JSON, not by transformers)."""

    model_type: str
    image_size: int
    patch_size: int
    hidden_size: int
    dimension: int
    text_length: int
    vocab_size: int
    crop: bool  # shorter side then centre crop (CLIP), or squashed to a square (SigLIP)
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def architecture(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "patch_size": self.patch_size, "image_size": self.image_size,
                "hidden_size": self.hidden_size}


def read_layout(folder: Path) -> Layout:
    config = json.loads((folder / "config.json").read_text())
    family = config.get("model_type")
    if family not in FAMILIES:
        raise RequestError(f"{folder} holds a {family!r} model; lookalike's text-and-image models are "
                         f"{' and '.join(FAMILIES)} checkpoints")
    model_defaults, processing_defaults = FAMILIES[family]
    vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
    processing_file = folder / "preprocessor_config.json"
    processing = processing_defaults | (json.loads(processing_file.read_text()) if processing_file.is_file() else {})
    hidden = vision.get("hidden_size", model_defaults["hidden_size"])
    return Layout(family, vision.get("image_size", model_defaults["image_size"]),
                  vision.get("patch_size", model_defaults["patch_size"]), hidden,
                  config.get("projection_dim", model_defaults["projection_dim"]) if family == "clip" else hidden,
                  text.get("max_position_embeddings", model_defaults["text_length"]),
                  text.get("vocab_size", model_defaults["vocab_size"]), bool(processing["do_center_crop"]),
                  tuple(processing["image_mean"]), tuple(processing["image_std"]))


def check_architecture(name: str, folder: Path, layout: Layout) -> None:
    """A folder given for a well-known name must have that model's architecture."""
    expected = CHECKPOINTS[name].architecture if name in CHECKPOINTS else {}
    different = {key: value for key, value in layout.architecture.items() if key in expected and expected[key] != value}
    if different:
        shown = ", ".join(f"{key} {value} (not {expected[key]})" for key, value in different.items())
        raise RequestError(f"{folder} is not a {name} checkpoint: {shown}; give --model clip for any CLIP or SigLIP "
                         "folder")


def folder_digest(folder: Path) -> str:
    """One SHA-256 over everything in a checkpoint that changes the vectors: weights, config, tokenizer, processor."""
    names = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json")
    parts = [(name, current_digest(folder / name)) for name in names if (folder / name).is_file()]
    weights = weights_file(folder)
    parts.append((weights.name, current_digest(weights)))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def current_digest(path: Path) -> str:
    """A file's SHA-256, read again when the file has changed since (a checkpoint rewritten in place, as
    fine-tuning does, must not reuse the old export)."""
    status = path.stat()
    return _digest(path, status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: Path, size: int, modified_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class ClipEmbedder:
    """A CLIP-family checkpoint: images and texts as L2-normalised vectors in the same space."""

    def __init__(self, name: str, weights: Path | None = None, device: str = "cpu", layer: str | None = None,
                 pool: str | None = None):
        self.name = name
        self.folder = find_checkpoint_folder(name, weights)
        self.given_folder = weights is not None
        self.layout = read_layout(self.folder)
        check_architecture(name, self.folder, self.layout)
        self.pool = POOLS[self.layout.model_type]
        if layer not in (None, LAYER) or pool not in (None, self.pool):
            raise RequestError(f"{name} has one layer ({LAYER}) and its pooling is its own ({self.pool}): "
                             "no --layer or --pool choice")
        self.layer = LAYER
        self.dimension = self.layout.dimension
        self.input_side = self.layout.image_size
        self.digest = folder_digest(self.folder)
        stem = f"{name}-{self.digest[:12]}-export{EXPORT_VERSION}"
        self._torch: Any = None
        self._exported = False
        self._exporting = threading.Lock()
        self.image_network = ExportedNetwork(f"{stem}-image", self._image_tower, self.input_side, ("features",),
                                             device)
        self.text_network = TextNetwork(stem, self._text_tower, self.folder, self.layout, device)

    def describe(self) -> dict[str, Any]:
        side = self.input_side
        resize = f"shorter side {side} bicubic, centre crop {side}" if self.layout.crop else \
            f"squashed to {side}x{side} bicubic"
        description = {
            "model": self.name,
            "version": f"weights-{self.digest[:12]}/export-{EXPORT_VERSION}",
            "dimension": self.dimension,
            "layer": self.layer,
            "pool": self.pool,
            "preprocessing": f"exif-upright, rgb (alpha on white), {resize}, x/255, mean {list(self.layout.mean)} "
                             f"std {list(self.layout.std)}",
            "source": CHECKPOINTS[self.name].repo if self.name in CHECKPOINTS else self.folder.name,
            "architecture": self.layout.architecture,
            "weights_digest": self.digest,
            "towers": ["image", "text"],
        }
        return description | ({"weights_file": str(self.folder)} if self.given_folder else {})

    def preprocess(self, image: DecodedImage) -> npt.NDArray[np.float32]:
        side = (self.input_side, self.input_side)
        pixels = ImageOps.fit(image.pixels, side, Image.Resampling.BICUBIC) if self.layout.crop else \
            image.pixels.resize(side, Image.Resampling.BICUBIC)
        mean, std = np.asarray(self.layout.mean, np.float32), np.asarray(self.layout.std, np.float32)
        return channels_first(pixels, mean=255.0 * mean, std=255.0 * std)

    def embed_batch(self, batch: npt.NDArray[np.float32]) -> Matrix:
        self.export_towers()
        return l2_normalise(self.image_network.run(batch)[0])

    def embed_texts(self, texts: Sequence[str]) -> Matrix:
        """Texts as vectors comparable with the images' (lowercased, as SigLIP was trained; CLIP lowercases too)."""
        self.export_towers()
        return l2_normalise(self.text_network.run(self.text_network.tokens(texts)))

    def export_towers(self) -> None:
        """Both towers in the cache, exported from one load of the checkpoint the first time either is needed
        (nothing to do once they are there); torch's copy of the weights is let go afterwards."""
        with self._exporting:
            if not self._exported:
                self.image_network.onnx_path()
                self.text_network.export_once()
                self._torch, self._exported = None, True

    def torch_model(self) -> Any:
        """The checkpoint in torch (transformers): what both towers are exported from."""
        if self._torch is None:
            self._torch = load_torch_model(self.folder, self.layout.model_type)
        return self._torch

    def _image_tower(self) -> Any:
        return make_tower(self.torch_model(), "image")

    def _text_tower(self) -> Any:
        return make_tower(self.torch_model(), "text")


def clip_extra(module: str) -> Any:
    """transformers or tokenizers, which the optional `clip` extra installs; without them, say so."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"CLIP-family models need the clip extra: pip install 'lookalike[clip]' ({error})") from None


def load_torch_model(folder: Path, model_type: str) -> Any:
    transformers = clip_extra("transformers")

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model_class = transformers.CLIPModel if model_type == "clip" else transformers.SiglipModel
    return model_class.from_pretrained(folder).eval()


def make_tower(model: Any, tower: str) -> Any:
    """One tower of a CLIP-family model as a torch module returning its projected embedding, to be exported."""
    import torch

    # tracing warns about every Python branch of transformers' code it freezes; each export is checked instead
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", module="torch.onnx")

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, inputs: Any) -> Any:
            output = (self.model.get_image_features(pixel_values=inputs) if tower == "image"
                      else self.model.get_text_features(input_ids=inputs))
            return output if isinstance(output, torch.Tensor) else output.pooler_output

    return Tower().eval()


class TextNetwork:
    """The text tower exported to `<cache>/onnx/<stem>-text.onnx` with its tokenizer fixed to the tower's length
    beside it (`<stem>-tokenizer.json`), run by ONNX Runtime."""

    def __init__(self, stem: str, build: Callable[[], Any], folder: Path, layout: Layout, device: str = "cpu"):
        self.stem = stem
        self.build = build
        self.folder = folder
        self.layout = layout
        self.device = device
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def onnx_file(self) -> Path:
        return cache_dir() / "onnx" / f"{self.stem}-text.onnx"

    @property
    def tokenizer_file(self) -> Path:
        return cache_dir() / "onnx" / f"{self.stem}-tokenizer.json"

    def tokens(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Token ids, padded and truncated to the tower's length, as the checkpoint's tokenizer makes them."""
        encoded = self.tokenizer.encode_batch([text.lower() for text in texts])
        return np.array([item.ids for item in encoded], dtype=np.int64)

    def run(self, tokens: npt.NDArray[np.int64]) -> Matrix:
        return self.session.run(None, {"input_ids": tokens})[0]

    @property
    def tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                self.export_once()
                self._tokenizer = clip_extra("tokenizers").Tokenizer.from_file(str(self.tokenizer_file))
            return self._tokenizer

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                self.export_once()
                self._session = open_session(self.onnx_file, self.device)
            return self._session

    def export_once(self) -> None:
        if not self.tokenizer_file.exists():
            save_fixed_tokenizer(self.folder, self.layout.text_length, self.tokenizer_file)
        if not self.onnx_file.exists():
            export_text_tower(self.build(), self.layout, self.onnx_file)


def save_fixed_tokenizer(folder: Path, length: int, path: Path) -> None:
    """The checkpoint's tokenizer as transformers builds it, padding and truncating every text to `length`
    (CLIP pools at its end token and SigLIP at the last position, both trained on texts padded so)."""
    tokenizer = clip_extra("transformers").AutoTokenizer.from_pretrained(folder)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or tokenizer.pad_token_id is None:
        raise RequestError(f"{folder}'s tokenizer is not a fast one with a padding token (tokenizer.json)")
    fixed = clip_extra("tokenizers").Tokenizer.from_str(backend.to_str())
    fixed.enable_truncation(length, direction=tokenizer.truncation_side)
    fixed.enable_padding(direction=tokenizer.padding_side, pad_id=tokenizer.pad_token_id,
                         pad_token=tokenizer.pad_token, length=length)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{threading.get_ident()}")
    fixed.save(str(partial))
    partial.replace(path)


def export_text_tower(module: Any, layout: Layout, path: Path) -> None:
    """Export a text tower taking `input_ids` (N, text_length) to ONNX, atomically, after checking it."""
    import torch

    sample = torch.randint(0, layout.vocab_size, (2, layout.text_length), generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{threading.get_ident()}")
    torch.onnx.export(module, (sample,), str(partial), input_names=["input_ids"], output_names=["features"],
                      dynamic_axes={"input_ids": {0: "batch"}, "features": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    with torch.no_grad():
        expected = module(sample).numpy()
    actual = open_session(partial).run(None, {"input_ids": sample.numpy()})[0]
    error = float(np.abs(expected - actual).max())
    if error > TOLERANCE:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export of the text tower differs from torch by {error:.2e}; refusing to use it")
    partial.replace(path)
