"""Upgrades keep old indexes: an index written by an earlier release (tests/data/format-1, made by
make_fixture.py at commit dd99eb9, format 1) opens, searches with the answers it gave then and takes new
photos; an index from a newer lookalike is refused, saying so."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY, REPO

from lookalike.faults import CRASH_AT
from lookalike.index import ImageIndex, IndexBusyError, IndexFormatError, delete_index, upgrade
from lookalike.index.folder import IndexFolder
from lookalike.index.manifest import FORMAT_VERSION, read_manifest_json
from lookalike.index.writer import WriterLock

FORMAT_1 = Path(__file__).parent / "data" / "format-1"


@pytest.fixture
def old_index(tmp_path: Path) -> Path:
    """A copy of the format-1 index with its photos (paths are stored relative to the index folder)."""
    shutil.copytree(FORMAT_1 / "photos", tmp_path / "photos")
    shutil.copytree(FORMAT_1 / "index", tmp_path / "index")
    return tmp_path / "index"


def expected() -> dict:
    return json.loads((FORMAT_1 / "expected.json").read_text())


def answer(result, photos: Path) -> list:
    return [[os.path.relpath(m.path, photos), round(m.score, 5), round(m.similarity, 5), m.labels]
            for m in result.matches]


def test_an_index_of_format_1_searches_with_the_answers_it_gave_then(old_index):
    photos = old_index.parent / "photos"
    then = expected()
    with ImageIndex.open(old_index) as index:
        for record in index.records():
            name = os.path.relpath(record.path, photos)
            assert answer(index.search(id=record.id, k=5), photos) == then["by_id"][name]
        first = next(index.records())
        assert answer(index.search(id=first.id, k=5, where={"label": "hat"}), photos) == then["where_hat"]
        assert answer(index.search(first.path, k=5), photos) == then["by_file"]
        info = index.info()
    assert {k: info[k] for k in then["info"]} == then["info"]


def test_an_index_of_format_1_reads_its_photos_capture_without_embedding_again(old_index):
    """Format 3 added each image's capture: the upgrade adds the columns, read_capture fills them from the files (these
    photos have no EXIF date: each is dated by the file time it was indexed with), and the answers stay the same."""
    with ImageIndex.open(old_index) as index:
        ids, vectors = index.vectors()
        assert all(record.capture.taken is None for record in index.records())
        report = index.read_capture()
        assert (report.images, report.from_exif, report.from_file) == (12, 0, 12)
        for record in index.records():
            assert record.capture.taken == datetime.fromtimestamp(record.mtime).strftime("%Y-%m-%dT%H:%M:%S")
            assert record.capture.taken_source == "file"
        assert np.array_equal(index.vectors()[1], vectors)
        newest = max(record.capture.taken for record in index.records())
        assert len(index.ids_matching([f"taken>={newest}"])) >= 1
    test_an_index_of_format_1_searches_with_the_answers_it_gave_then(old_index)


def test_an_index_of_format_1_takes_new_photos_after_the_upgrade(old_index, tmp_path):
    new = tmp_path / "new" / "hat.jpg"
    new.parent.mkdir()
    shutil.copy(sorted((DEMO_GALLERY / "hat").glob("*.jpg"))[5], new)
    with ImageIndex.open(old_index) as index:
        report = index.add_files([new])
        assert report.added == 1 and len(index) == 13
        added = index.record_by_path(new)
        assert added is not None
        old = next(index.records())
        assert added.id in [m.id for m in index.search(id=old.id, k=12).matches]
    with ImageIndex.open(old_index) as again:  # and it opens once more as the new format
        assert len(again) == 13


def test_an_index_from_a_newer_lookalike_is_refused(old_index):
    manifest = json.loads((old_index / "manifest.json").read_text())
    (old_index / "manifest.json").write_text(json.dumps(manifest | {"format_version": 99}))
    with pytest.raises(IndexFormatError, match="newer lookalike"):
        ImageIndex.open(old_index)


def sqlite_version(folder: Path) -> int:
    with sqlite3.connect(f"file:{IndexFolder(folder).database}?mode=ro", uri=True) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_an_upgrade_killed_between_database_and_manifest_is_finished_by_the_next_open(old_index):
    opening = [sys.executable, "-c", f"from lookalike.index import ImageIndex; ImageIndex.open({str(old_index)!r})"]
    killed = subprocess.run(opening, cwd=REPO, capture_output=True, timeout=300,
                            env=os.environ | {CRASH_AT: "upgrade.database-upgraded"})
    assert killed.returncode == -9, killed.stderr.decode()
    assert (sqlite_version(old_index), read_manifest_json(old_index)["format_version"]) == (2, 1)
    test_an_index_of_format_1_searches_with_the_answers_it_gave_then(old_index)
    assert (sqlite_version(old_index), read_manifest_json(old_index)["format_version"]) == (FORMAT_VERSION,
                                                                                             FORMAT_VERSION)


def test_a_new_index_and_an_upgraded_one_have_the_same_database_schema(old_index, tmp_path):
    ImageIndex.open(old_index).close()
    ImageIndex.create(tmp_path / "new").close()
    assert schema_of(old_index) == schema_of(tmp_path / "new")
    assert sqlite_version(old_index) == sqlite_version(tmp_path / "new") == FORMAT_VERSION


def test_a_database_from_a_newer_lookalike_is_refused(old_index):
    ImageIndex.open(old_index).close()
    with sqlite3.connect(IndexFolder(old_index).database) as db:
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    with pytest.raises(IndexFormatError, match="newer lookalike"):
        ImageIndex.open(old_index)


def schema_of(folder: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{IndexFolder(folder).database}?mode=ro", uri=True) as db:
        return sorted(db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall())


def test_an_index_of_format_1_can_be_deleted_without_opening_it(old_index):
    delete_index(old_index)
    assert not old_index.exists()


def test_an_upgrade_waits_for_another_writer_and_gives_up_after_a_while(old_index, monkeypatch):
    holder = WriterLock(IndexFolder(old_index).writer_lock)
    holder.acquire()
    monkeypatch.setattr(upgrade, "WAIT_SECONDS", 0.3)
    with pytest.raises(IndexBusyError):
        ImageIndex.open(old_index)
    assert read_manifest_json(old_index)["format_version"] == 1  # nothing half-done
    releasing = threading.Timer(0.2, holder.release)
    releasing.start()
    monkeypatch.setattr(upgrade, "WAIT_SECONDS", 30.0)
    with ImageIndex.open(old_index) as index:  # it waited for the lock, then upgraded
        assert len(index) == 12
    releasing.join()
    assert read_manifest_json(old_index)["format_version"] == FORMAT_VERSION
