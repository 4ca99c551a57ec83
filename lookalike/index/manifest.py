"""The small JSON file that says what an index folder is and which model made it: read and written here only.

`Manifest` is immutable: a change is a new manifest (`manifest.but(...)`) written whole, atomically. Older
formats are brought up to this one by lookalike.index.upgrade before anything reads them as a Manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.errors import LookalikeError
from lookalike.faults import crash_point, disk_full_reported
from lookalike.index.folder import MANIFEST as FILE
from lookalike.version import __version__

FORMAT = "lookalike-index"
FORMAT_VERSION = 3  # 2: the SQLite schema records its version; every manifest field is written, none implied
# 3: each image's capture (date taken and its source, camera, GPS position; see lookalike.capture)

Json = dict[str, Any]


class IndexFormatError(LookalikeError):
    """An index folder that is missing, damaged or written by a newer lookalike."""


@dataclass(frozen=True)
class Manifest:
    """What an index folder is. `embedder` is the embedder's own description (compared whole, so kept as it
    wrote it); the plans are None when switched off."""

    embedder: Json
    index_type: str
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    index_params: Json = field(default_factory=dict)
    index_choice: tuple[str, ...] = ()
    reduction_plan: Json | None = None  # the PCA to fit once the index is big enough
    reduction: Json | None = None  # the PCA fitted (components, whiten, digest of pca.npz)
    augmentation_plan: Json | None = None  # database-side augmentation (neighbours, alpha)
    store: str | None = None  # where a store outside the folder (Milvus) keeps the vectors; None: in the folder
    catalog: str | None = None  # the PostgreSQL database holding the catalogue (catalogue.py); None: images.sqlite
    index_type_pending: Json | None = None  # 'auto' waiting for the first files to choose (max_memory, latency_ms)
    tuned: Json | None = None  # what `tune` measured when it set index_params
    lookalike_version: str = __version__
    format_version: int = FORMAT_VERSION

    def but(self, **changes: Any) -> Manifest:
        """This manifest with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> Json:
        return dataclasses.asdict(self) | {"format": FORMAT, "index_choice": list(self.index_choice)}

    @classmethod
    def from_json(cls, content: Json) -> Manifest:
        """A manifest of this format (every field present: upgrade.py brings older ones here first)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in content.items() if k in names}
        return cls(**values | {"index_choice": tuple(content.get("index_choice") or ())})

    def backend_options(self) -> Json:
        """Keyword arguments for the index's backend: its tuned parameters and, for a store outside the
        index folder, its location and the model that owns it."""
        options = dict(self.index_params)
        if self.store is not None:
            options |= {"location": self.store, "owner": f"{self.embedder['model']} {self.embedder['version']}"}
        return options


def write_manifest(folder: Path, manifest: Manifest | Json) -> None:
    """Replace the manifest atomically: readers see the old file or the new one, never half."""
    content = manifest.to_json() if isinstance(manifest, Manifest) else manifest
    partial = folder / (FILE + ".partial")
    with disk_full_reported(folder):
        partial.write_text(json.dumps(content, indent=2, sort_keys=True))
    crash_point("manifest.writing")
    os.replace(partial, folder / FILE)
    crash_point("manifest.written")


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an index of this format (IndexFormatError for an older one not yet upgraded)."""
    content = read_manifest_json(folder)
    if content["format_version"] != FORMAT_VERSION:
        raise IndexFormatError(f"{folder} is of format {content['format_version']}: open it with "
                               f"ImageIndex.open, which upgrades it to format {FORMAT_VERSION}")
    return Manifest.from_json(content)


def read_manifest_json(folder: Path) -> Json:
    """The manifest as written, of any format this version reads; a damaged or newer one is refused."""
    path = folder / FILE
    if not path.exists():
        raise IndexFormatError(f"{folder} is not a lookalike index (no {FILE}); create one with `lookalike index`")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise IndexFormatError(f"{path} is damaged or unreadable: {error}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise IndexFormatError(f"{path} is not a lookalike index manifest")
    missing = [key for key in ("embedder", "index_type", "created") if key not in content]
    if missing:
        raise IndexFormatError(f"{path} is damaged: it lacks {', '.join(missing)}")
    content["format_version"] = int(content.get("format_version", 1))
    refuse_newer(folder, content["format_version"])
    return content


def refuse_newer(folder: Path, version: int) -> None:
    if version > FORMAT_VERSION:
        raise IndexFormatError(f"{folder} was written by a newer lookalike (format {version}, this version reads "
                               f"up to {FORMAT_VERSION}): upgrade lookalike")
