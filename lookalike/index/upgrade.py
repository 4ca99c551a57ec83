"""Upgrades that keep old indexes: an index folder of an earlier format is brought to this one when opened.

Under the writer lock, for each format after the folder's: the database's step (schema.py), then the
manifest's step, written atomically. The database goes first, so it is never behind its manifest; a crash
between the two leaves a folder the next open finishes upgrading (the database step is then found done).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lookalike import reduction
from lookalike.backends import store_manifest
from lookalike.errors import RequestError
from lookalike.faults import crash_point
from lookalike.index import schema
from lookalike.index.catalogue import catalog_manifest
from lookalike.index.folder import IndexFolder
from lookalike.index.manifest import (
    FORMAT_VERSION,
    IndexFormatError,
    Json,
    Manifest,
    read_manifest_json,
    write_manifest,
)
from lookalike.index.writer import IndexBusyError, WriterLock


def explicit_defaults(content: Json) -> Json:
    """Format 2 writes every field: format 1 left out those at their defaults (a missing reduction plan
    meant the default PCA, a missing augmentation plan meant none)."""
    defaults = {"index_params": {}, "index_choice": [], "reduction_plan": reduction.DEFAULT_PLAN, "reduction": None,
                "augmentation_plan": None, "store": None, "index_type_pending": None, "tuned": None}
    return defaults | content


def same_fields(content: Json) -> Json:
    """Format 3 adds columns to the database only (each image's capture): the manifest keeps its fields."""
    return content


MANIFEST_STEPS: dict[int, Callable[[Json], Json]] = {2: explicit_defaults, 3: same_fields}
WAIT_SECONDS = 30.0  # how long an upgrade waits for another process's writer lock


def opened_manifest(folder: Path, store: str | None = None, catalog: str | None = None) -> Manifest:
    """The folder's manifest in this format, upgrading the folder first when it is of an earlier one. A folder
    whose database is missing or empty, or whose vectors are not in `store` or catalogue not in `catalog` (when
    given), is refused."""
    content = read_manifest_json(folder)
    if store is not None and store_manifest(store).get("store") != content.get("store"):
        raise RequestError(f"{folder} keeps its vectors in {content.get('store') or 'faiss'}, not {store}")
    if catalog is not None and catalog_manifest(catalog).get("catalog") != content.get("catalog"):
        raise RequestError(f"{folder} keeps its catalogue in {content.get('catalog') or 'sqlite'}, not {catalog}")
    if content.get("catalog") is not None:
        return Manifest.from_json(content)  # a PostgreSQL catalogue: no file to check, made at this format
    database = IndexFolder(folder).database
    if not database.exists():
        raise IndexFormatError(f"{folder} has a manifest but no {database.name}, which holds its images and vectors: "
                               "restore it from a backup, or index the photos again into a new folder")
    if database.stat().st_size == 0:
        raise IndexFormatError(f"{database} is empty, so damaged or truncated: restore it from a backup, or index "
                               "the photos again into a new folder")
    if content["format_version"] < FORMAT_VERSION:
        content = upgraded(folder)
    return Manifest.from_json(content)


def upgraded(folder: Path) -> Json:
    """Upgrade under the writer lock. While another process holds it (most often one upgrading this folder
    too, opened at the same moment), wait up to WAIT_SECONDS for it, then IndexBusyError."""
    lock, deadline = WriterLock(IndexFolder(folder).writer_lock), time.monotonic() + WAIT_SECONDS
    while True:
        try:
            with lock.holding():
                return upgrade(folder, read_manifest_json(folder))  # read again: another may have upgraded it
        except IndexBusyError:
            content = read_manifest_json(folder)
            if content["format_version"] == FORMAT_VERSION:
                return content  # the other process upgraded it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def upgrade(folder: Path, content: Json) -> Json:
    for version in range(content["format_version"] + 1, FORMAT_VERSION + 1):
        schema.upgrade_database(IndexFolder(folder).database, version)
        crash_point("upgrade.database-upgraded")
        content = MANIFEST_STEPS[version](content) | {"format_version": version}
        write_manifest(folder, content)
    return content
