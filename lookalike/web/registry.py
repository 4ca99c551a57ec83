"""The indexes one server holds, by name, each with a readers-writer lock (searches share, writes take turns)."""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from lookalike.errors import NotFoundError, RequestError
from lookalike.index import ImageIndex, delete_index
from lookalike.index.folder import IndexFolder
from lookalike.web.journal import Journal

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers so additions cannot starve."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            self._condition.wait_for(lambda: not self._writing and self._readers == 0)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


@dataclass
class ServedIndex:
    name: str
    index: ImageIndex
    journal: Journal  # the uploads and jobs this server accepted for the index (see journal.py)
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)

    @property
    def folder(self) -> Path:
        return self.index.folder


class IndexRegistry:
    """Name -> open index. Names come from folder names; creating and deleting happen only under index_root."""

    def __init__(self, index_root: Path | None = None):
        self.index_root = index_root
        self._served: dict[str, ServedIndex] = {}
        self._lock = threading.Lock()

    def open(self, folder: str | os.PathLike[str], **options: Any) -> ServedIndex:
        index = ImageIndex.open(folder, **options)
        _warm_up(index)
        return self._register(index)

    def get(self, name: str) -> ServedIndex:
        served = self._served.get(name)
        if served is None:
            raise NotFoundError(f"no index named {name!r}; the server has {', '.join(self.names()) or 'none'}")
        return served

    def names(self) -> list[str]:
        return list(self._served)

    def create(self, name: str, **options: Any) -> ServedIndex:
        if self.index_root is None:
            raise PermissionError("this server does not create indexes (start it with --index-root DIR)")
        if not NAME.match(name):
            raise RequestError(f"index name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
        if name in self._served:
            raise FileExistsError(f"an index named {name!r} is already served")
        folder = IndexFolder(self.index_root / name)
        if not folder.is_empty_or_missing():
            raise FileExistsError(f"{folder.root} already exists and is not empty")
        return self._register(ImageIndex.create(folder.root, **options))

    def delete(self, name: str) -> None:
        """Delete a served index, only one in the place `create` puts them (a link there leading out does not count)."""
        served = self.get(name)
        if not self._under_index_root(served.folder):
            raise PermissionError("only indexes created under --index-root can be deleted over HTTP")
        with served.lock.writing():
            with self._lock:
                self._served.pop(name, None)
            served.journal.close()
            served.index.close()
            delete_index(served.folder)

    def _under_index_root(self, folder: Path) -> bool:
        if self.index_root is None:
            return False
        return os.path.dirname(os.path.realpath(folder)) == os.path.realpath(self.index_root)

    def close(self) -> None:
        for served in list(self._served.values()):
            served.journal.close()
            served.index.close()
        self._served.clear()

    def _register(self, index: ImageIndex) -> ServedIndex:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", index.folder.resolve().name).strip("-.") or "index"  # URL-safe
        with self._lock:
            name, number = base, 2
            while name in self._served:
                name, number = f"{base}-{number}", number + 1
            served = ServedIndex(name, index, Journal(index.files))
            self._served[name] = served
        return served


def _warm_up(index: ImageIndex) -> None:
    """One embedding at start-up, so the first user's search does not pay for the runtime's lazy set-up."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "grey").save(buffer, "PNG")
    index.searcher.embed_image(buffer.getvalue())
