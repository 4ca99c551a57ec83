"""Tiny random-weight CLIP and SigLIP checkpoints, saved as Hugging Face folders: the tests' stand-in for real
weights, which no machine here can download. Same code path as a real checkpoint, a thousandth of the size.

`steer_text_tower` rewrites a CLIP checkpoint's text projection so that chosen texts embed exactly onto chosen
vectors: a test can then say which image a text query must find, instead of trusting the tower it tests.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path

import numpy as np

TEXT_LENGTH = 16
IMAGE_SIZE = 32
SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def tiny_tokenizer() -> object:
    """A CLIP BPE tokenizer over single letters (no merges): every word is its letters, then the end of word."""
    from transformers import CLIPTokenizer

    vocab = {token: number for number, token in enumerate(SPECIALS)}
    for letter in string.ascii_lowercase + string.digits + ",.'-":
        vocab.setdefault(letter, len(vocab))
        vocab.setdefault(letter + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = TEXT_LENGTH
    return tokenizer


def save_tiny_checkpoint(folder: Path, family: str = "clip", seed: int = 0) -> Path:
    """A random-weight checkpoint folder (config.json, model.safetensors, tokenizer.json), 32-pixel images."""
    import torch
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    tokenizer = tiny_tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": TEXT_LENGTH}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": IMAGE_SIZE, "patch_size": 8}
    torch.manual_seed(seed)
    if family == "clip":
        ids = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
        model = CLIPModel(CLIPConfig(text_config=text | ids, vision_config=vision, projection_dim=24))
    else:
        model = SiglipModel(SiglipConfig(text_config=text | {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 1},
                                         vision_config=vision))
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def reference_tokens(folder: Path, texts: list[str]) -> np.ndarray:
    """Token ids as transformers' own tokenizer makes them, padded to the tower's length (what CLIP expects)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer([t.lower() for t in texts], padding="max_length", max_length=TEXT_LENGTH, truncation=True)
    return np.array(encoded["input_ids"], dtype=np.int64)


def torch_embeddings(folder: Path, pixels: np.ndarray | None = None, tokens: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors from the torch model itself (transformers), the reference the ONNX towers must equal."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        if pixels is not None:
            output = model.get_image_features(pixel_values=torch.from_numpy(pixels))
        else:
            output = model.get_text_features(input_ids=torch.from_numpy(tokens))
    vectors = output.pooler_output.numpy()
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def steer_text_tower(folder: Path, targets: Mapping[str, np.ndarray]) -> None:
    """Rewrite a CLIP checkpoint's text projection so that each text embeds exactly onto its target vector
    (least squares through the texts' pooled states; exact while there are fewer texts than hidden units)."""
    import torch
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    tokens = torch.from_numpy(reference_tokens(folder, list(targets)))
    with torch.no_grad():
        pooled = model.text_model(input_ids=tokens).pooler_output.numpy().astype(np.float64)  # texts x hidden
        wanted = np.stack([np.asarray(v, np.float64) for v in targets.values()])  # texts x projection
        projection = (np.linalg.pinv(pooled) @ wanted).T  # projection x hidden: projection @ pooled_i = wanted_i
        model.text_projection.weight.copy_(torch.from_numpy(projection.astype(np.float32)))
    model.save_pretrained(folder)
