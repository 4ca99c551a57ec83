"""CLIP-family checkpoints: which ones lookalike knows, where their folders are, and fetching them from the hub.

No package on the registries ships CLIP weights, so, as rclip does, a user's machine downloads them once
(`lookalike models fetch NAME`) into `<cache>/weights/NAME`, checking every large file's SHA-256 against the
hub's record; everywhere else a local copy of the folder is given with `--weights FOLDER`. Nothing here runs
at search time: a machine without the weights gets an error that says both ways.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.errors import RequestError
from lookalike.settings import cache_dir

ANY_FOLDER = "clip"  # any CLIP or SigLIP checkpoint folder in Hugging Face format, given with --weights
RECORD = "lookalike-weights.json"  # what `fetch` checked: repository, commit, SHA-256 of each file
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the first one a repository has is fetched
SMALL_FILES = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt")


@dataclass(frozen=True)
class Checkpoint:
    """A well-known checkpoint: its hub repository, its download size and the architecture its folder must have."""

    name: str
    repo: str
    size: str  # the weights file, as the hub lists it (approximate)
    architecture: dict[str, Any] = field(default_factory=dict)  # config facts a copy must match
    revision: str = "main"


CHECKPOINTS = {
    "clip-vit-b32": Checkpoint("clip-vit-b32", "openai/clip-vit-base-patch32", "about 605 MB",
                               {"model_type": "clip", "patch_size": 32, "image_size": 224, "hidden_size": 768}),
    "clip-vit-b16": Checkpoint("clip-vit-b16", "openai/clip-vit-base-patch16", "about 600 MB",
                               {"model_type": "clip", "patch_size": 16, "image_size": 224, "hidden_size": 768}),
    "siglip2-b16": Checkpoint("siglip2-b16", "google/siglip2-base-patch16-224", "about 1.5 GB",
                              {"model_type": "siglip", "patch_size": 16, "image_size": 224, "hidden_size": 768}),
}
TEXT_MODELS = (*CHECKPOINTS, ANY_FOLDER)


def weights_cache(name: str) -> Path:
    """Where `lookalike models fetch NAME` puts a checkpoint's folder."""
    return cache_dir() / "weights" / name


def where_to_get(name: str) -> str:
    """The two ways to give a machine a checkpoint, for error messages and `lookalike models`."""
    if name not in CHECKPOINTS:
        return "pass --weights FOLDER, a CLIP or SigLIP checkpoint folder in Hugging Face format " \
               "(config.json, model.safetensors, tokenizer.json)"
    checkpoint = CHECKPOINTS[name]
    return (f"run `lookalike models fetch {name}` on a machine that can reach the Hugging Face hub "
            f"(it downloads {checkpoint.repo}, {checkpoint.size}, into {weights_cache(name)}; copy that folder "
            f"to the same place on machines that cannot), or pass --weights FOLDER, a local copy of {checkpoint.repo}")


def find_checkpoint_folder(name: str, weights: Path | None = None) -> Path:
    """The given folder, or the fetched one in the cache; else a FileNotFoundError that says both ways."""
    if weights is not None:
        folder = Path(weights)
        if not folder.is_dir():
            raise FileNotFoundError(f"--weights for {name} is a checkpoint folder (config.json, model.safetensors, "
                                    f"tokenizer.json), and {folder} is not a folder")
        return check_folder(folder)
    if name not in CHECKPOINTS:
        raise FileNotFoundError(f"model {name} needs its weights: {where_to_get(name)}")
    folder = weights_cache(name)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no weights for {name} on this machine: {where_to_get(name)}")
    return check_folder(folder)


def check_folder(folder: Path) -> Path:
    """A checkpoint folder has a config, one weights file and a fast tokenizer (tokenizer.json)."""
    missing = [wanted for wanted in ("config.json", "tokenizer.json") if not (folder / wanted).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete CLIP-family checkpoint folder: no {', '.join(missing)}")
    return folder


def weights_file(folder: Path) -> Path:
    return next(folder / name for name in WEIGHT_FILES if (folder / name).is_file())


def fetch_weights(name: str) -> Path:
    """Download a known checkpoint from the hub into the cache (with the hub's progress bars), check each large
    file's SHA-256 against the hub's record, and return its folder. Already fetched: nothing is downloaded."""
    if name not in CHECKPOINTS:
        raise RequestError(f"unknown checkpoint {name!r}; `lookalike models fetch` knows {', '.join(CHECKPOINTS)} "
                         f"(any other CLIP or SigLIP folder: --model {ANY_FOLDER} --weights FOLDER)")
    target = weights_cache(name)
    if (target / RECORD).is_file():
        return check_folder(target)
    checkpoint = CHECKPOINTS[name]
    commit, digests = _hub_record(checkpoint)
    partial = target.with_name(target.name + ".partial")
    _download(checkpoint, commit, list(digests), partial)
    check_digests(partial, digests)
    (partial / RECORD).write_text(json.dumps({"repo": checkpoint.repo, "commit": commit, "sha256": digests},
                                             indent=2))
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)
    return check_folder(target)


def _hub_record(checkpoint: Checkpoint) -> tuple[str, dict[str, str | None]]:
    """The commit the revision names now and the files to fetch (large files with the hub's SHA-256)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(checkpoint.repo, revision=checkpoint.revision, files_metadata=True)
    except Exception as error:  # noqa: BLE001 - offline, refused, DNS, HTTP errors: all mean "cannot reach"
        raise _unreachable(checkpoint, error) from None
    present = {sibling.rfilename: sibling for sibling in info.siblings or []}
    weights = next((name for name in WEIGHT_FILES if name in present), None)
    if weights is None:
        raise FileNotFoundError(f"{checkpoint.repo} has none of {', '.join(WEIGHT_FILES)}")
    wanted = [name for name in (*SMALL_FILES, weights) if name in present]
    return str(info.sha), {name: present[name].lfs.sha256 if present[name].lfs else None for name in wanted}


def _download(checkpoint: Checkpoint, commit: str, files: list[str], folder: Path) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(checkpoint.repo, revision=commit, local_dir=folder, allow_patterns=files)
    except Exception as error:  # noqa: BLE001 - see _hub_record
        raise _unreachable(checkpoint, error) from None


def check_digests(folder: Path, digests: dict[str, str | None]) -> None:
    """Refuse a download whose large files do not have the SHA-256 the hub records for them."""
    from lookalike.embedders.exported import file_digest

    for name, expected in digests.items():
        if expected is None:
            continue
        actual = file_digest(folder / name)
        if actual != expected:
            (folder / name).unlink()
            raise RequestError(f"{folder / name} has SHA-256 {actual}, the hub records {expected}: the download is "
                             "damaged; run the fetch again")


def _unreachable(checkpoint: Checkpoint, error: Exception) -> ConnectionError:
    cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConnectionError(f"cannot download {checkpoint.repo} from the Hugging Face hub ({cause}). This machine may "
                           f"be offline: {where_to_get(checkpoint.name)}")
