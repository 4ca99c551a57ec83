"""What the parts of one open index share: its folder, embedder, manifest, store and writer lock, kept in
step with what other processes commit. ImageIndex (the facade), its Searcher and its Upkeep each hold it."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from lookalike.embedders import Embedder
from lookalike.index.catalogue import writer_lock
from lookalike.index.folder import MANIFEST, IndexFolder
from lookalike.index.manifest import Manifest, read_manifest, write_manifest
from lookalike.index.store import VectorStore
from lookalike.reduction import ReductionFileError, load_reduction

log = logging.getLogger("lookalike")
P = ParamSpec("P")
R = TypeVar("R")


class IndexState:
    """One open index folder: the manifest as last read or written, and the store that follows it."""

    def __init__(self, folder: Path, embedder: Embedder, manifest: Manifest):
        self.folder = Path(folder)
        self.files = IndexFolder(self.folder)
        self.embedder = embedder
        self.manifest = manifest
        self.writer = writer_lock(self.folder, manifest.catalog)  # a file lock, or one on the catalogue's server
        self._catching_up = threading.Lock()
        self.store = self.new_store()

    def new_store(self) -> VectorStore:
        """A store as the manifest describes it (its index type, reduction and backend options)."""
        return VectorStore(self.folder, self.embedder.dimension, self.manifest.index_type,
                           recorded_reduction(self.files.reduction, self.manifest), catalog=self.manifest.catalog,
                           **self.manifest.backend_options())

    def catch_up(self) -> None:
        """Search what other processes committed since this one last looked: the saved copy of the
        database's generation, else a rebuild (and their manifest, when they fitted PCA or tuned)."""
        if not self.store.is_behind():
            return
        with self._catching_up:
            manifest = read_manifest(self.folder)
            if manifest != self.manifest:
                self._adopt(manifest)
            self.store.catch_up()

    def _adopt(self, manifest: Manifest) -> None:
        """Another process's manifest: its reduction, index type and search parameters become this index's."""
        before, self.manifest = self.manifest, manifest
        reduction = self.store.reduction
        if manifest.reduction != before.reduction:
            reduction = recorded_reduction(self.files.reduction, manifest)
        if (reduction is not self.store.reduction or manifest.index_type != before.index_type
                or manifest.backend_options() != before.backend_options()):
            self.store.configure(manifest.index_type, reduction, **manifest.backend_options())

    def change_manifest(self, **changes: Any) -> None:
        """Record changed fields in the manifest (atomically, whole); the caller holds the writer lock."""
        self.manifest = self.manifest.but(**changes)
        write_manifest(self.folder, self.manifest)


class Writes(Protocol):
    """An object with write methods: a part of an index, holding its state."""

    _state: IndexState


W = TypeVar("W", bound=Writes)


def writes(method: Callable[Concatenate[W, P], R]) -> Callable[Concatenate[W, P], R]:
    """A write operation: it holds the index's writer lock while it runs (IndexBusyError when another
    writer has it), starts from what is committed now and, when it fails, leaves nothing half-written."""

    @functools.wraps(method)
    def writing(self: W, *args: P.args, **kwargs: P.kwargs) -> R:
        state = self._state
        outermost = not state.writer.held
        with state.writer.holding():
            try:
                state.catch_up()
                return method(self, *args, **kwargs)
            except BaseException:
                if outermost:
                    state.store.rollback()
                raise

    return writing


def recorded_reduction(path: Path, manifest: Manifest) -> Any:
    """The reduction file, only when it is the one the manifest records (same digest); else None."""
    recorded = manifest.reduction
    if recorded is None:
        return None
    try:
        reduction = load_reduction(path)
    except ReductionFileError as damaged:
        log.warning("lookalike: %s; it is fitted again from the full vectors", damaged)
        return None
    if reduction is not None and not reduction.is_recorded_as(recorded["digest"]):
        log.warning("lookalike: %s is not the reduction %s records (another digest); it is fitted again from the "
                    "full vectors", path, MANIFEST)
        return None
    return reduction
