"""Damaged and surprising index folders: a clear IndexFormatError or a rebuilt derived file, never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import write_photo
from recovery import record_figure

from lookalike.cli import main
from lookalike.faults import UnwritableError
from lookalike.index import ImageIndex, IndexFormatError
from lookalike.index.folder import IndexFolder


@pytest.fixture
def small_index(tmp_path, photo_folder):
    folder = tmp_path / "idx"
    with ImageIndex.create(folder, pca=4) as index:
        index.add_folder(photo_folder)
        assert index.reduction.dimension == 4
    return folder


@pytest.mark.parametrize("content", ["[]", "{}", '"lookalike"', '{"format": "lookalike-index"}'])
def test_a_manifest_that_is_not_an_index_manifest_is_a_format_error(small_index, content):
    IndexFolder(small_index).manifest.write_text(content)
    with pytest.raises(IndexFormatError, match="manifest"):
        ImageIndex.open(small_index)


def test_a_manifest_that_is_a_folder_is_a_format_error(small_index):
    manifest = IndexFolder(small_index).manifest
    manifest.unlink()
    manifest.mkdir()
    with pytest.raises(IndexFormatError, match="unreadable"):
        ImageIndex.open(small_index)


@pytest.mark.parametrize("damage", [b"", b"not a database at all" * 100])
def test_a_damaged_database_is_a_format_error_not_a_traceback(small_index, damage, capsys):
    database = IndexFolder(small_index).database
    for sidecar in (database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        sidecar.unlink(missing_ok=True)
    database.write_bytes(damage)
    with pytest.raises(IndexFormatError, match="damaged"):
        ImageIndex.open(small_index)
    assert main(["info", "--index", str(small_index)]) == 2
    assert "damaged" in capsys.readouterr().err


def test_a_deleted_database_is_not_opened_as_an_empty_index(small_index):
    IndexFolder(small_index).database.unlink()
    with pytest.raises(IndexFormatError, match="no images.sqlite"):
        ImageIndex.open(small_index)


def test_a_reduction_file_the_manifest_does_not_record_is_ignored(small_index, tmp_path, photo_folder):
    """A crash after writing pca.npz but before the manifest: the manifest says no PCA, so none is used."""
    with ImageIndex.create(tmp_path / "full", pca=0) as full:
        full.add_folder(photo_folder)
    shutil.copy(IndexFolder(small_index).reduction, IndexFolder(tmp_path / "full").reduction)
    with ImageIndex.open(tmp_path / "full") as reopened:
        assert reopened.reduction is None and reopened.info()["reduction"] == "none"
        assert reopened.searcher.searchable_vectors([int(reopened.ids()[0])]).shape[1] == 1280


def test_a_lost_or_damaged_reduction_file_is_fitted_again(small_index):
    files = IndexFolder(small_index)
    with ImageIndex.open(small_index) as index:
        expected = index.search(id=int(index.ids()[0]), k=5)
    for damage in ("lose", "garble"):
        if damage == "lose":
            files.reduction.unlink()
        else:
            files.reduction.write_bytes(b"garbage")
        with ImageIndex.open(small_index) as index:
            assert index.reduction.dimension == 4 and files.reduction.exists()
            assert [m.id for m in index.search(id=int(index.ids()[0]), k=5).matches] == [m.id for m in expected.matches]


def test_an_index_is_not_written_into_a_folder_that_holds_other_files(tmp_path, capsys):
    folder = tmp_path / "my-documents"
    write_photo(folder / "holiday.png", seed=1)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and not a lookalike index"):
        ImageIndex.create(folder)
    assert main(["index", str(tmp_path / "photos-elsewhere"), "--index", str(folder)]) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.png", "notes.txt"]


# --- every file of the folder checked (issue 24) ----------------------------------------------------
@pytest.fixture
def histogram_index(tmp_path, photo_folder):
    """A PCA-reduced index made in milliseconds (a colour-histogram embedder needs no network)."""
    folder = tmp_path / "hist"
    with ImageIndex.create(folder, model="color-histogram", pca=4, dba=0) as index:
        index.add_folder(photo_folder)
    return folder


def scores_of(folder) -> list[list[float]]:
    with ImageIndex.open(folder) as index:
        return [[round(m.score, 5) for m in index.search(id=int(i), k=8).matches] for i in index.ids()]


def rewrite_reduction(folder, **changed) -> None:
    path = IndexFolder(folder).reduction
    with np.load(path) as saved:
        arrays = dict(saved) | changed
    np.savez(path, **arrays)


def record_older_digest(folder) -> None:
    """The manifest as releases before issue 24 wrote it: a digest of the components and the scale alone."""
    with np.load(IndexFolder(folder).reduction) as saved:
        digest = hashlib.sha256(saved["components"].tobytes() + saved["scale"].tobytes()).hexdigest()[:12]
    manifest = json.loads(IndexFolder(folder).manifest.read_text())
    manifest["reduction"]["digest"] = digest
    IndexFolder(folder).manifest.write_text(json.dumps(manifest))


def test_a_reduction_whose_mean_was_altered_is_fitted_again_not_used(histogram_index, caplog):
    expected = scores_of(histogram_index)
    with np.load(IndexFolder(histogram_index).reduction) as saved:
        mean = saved["mean"]
    rewrite_reduction(histogram_index, mean=mean + 0.05)
    assert scores_of(histogram_index) == expected
    assert "pca.npz is not the reduction manifest.json records" in caplog.text
    with np.load(IndexFolder(histogram_index).reduction) as saved:
        assert np.array_equal(saved["mean"], mean)
    record_figure("folder", case="pca.npz mean altered by 0.05", before="used silently (scores shift up to 0.03)",
                  now="another digest: fitted again, answers equal the undamaged index's")


def test_an_index_whose_manifest_holds_the_older_digest_opens_with_its_reduction(histogram_index):
    record_older_digest(histogram_index)
    before = IndexFolder(histogram_index).reduction.read_bytes()
    with ImageIndex.open(histogram_index) as index:
        assert index.reduction is not None and index.reduction.dimension == 4
    assert IndexFolder(histogram_index).reduction.read_bytes() == before  # used as it is, not fitted again


@pytest.mark.parametrize("damage", ["not a zip", "a broken zip", "a mean one value short", "no scale"])
def test_a_damaged_reduction_file_is_fitted_again_even_under_the_older_digest(histogram_index, damage, caplog):
    expected = scores_of(histogram_index)
    record_older_digest(histogram_index)  # the older digest does not cover the mean: the shapes are checked
    path = IndexFolder(histogram_index).reduction
    if damage == "not a zip":
        path.write_bytes(b"\x93NUMPY not an archive")
    elif damage == "a broken zip":
        path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    elif damage == "a mean one value short":
        with np.load(path) as saved:
            rewrite_reduction(histogram_index, mean=saved["mean"][:-1])
    else:
        with np.load(path) as saved:
            np.savez(path, **{name: saved[name] for name in saved.files if name != "scale"})
    assert scores_of(histogram_index) == expected
    assert f"{path} is damaged" in caplog.text
    said = next(r.getMessage() for r in caplog.records if "is damaged" in r.getMessage())
    record_figure("folder", case=f"pca.npz: {damage} (older digest)", before={
        "not a zip": "opened (pickle refused, fitted again)", "a broken zip": "BadZipFile, serve does not start",
        "a mean one value short": "operands could not be broadcast, /ready 200, every search 422",
        "no scale": "fitted again"}[damage], now=said.replace(str(histogram_index), "INDEX") + " (answers equal)")


def test_one_stored_vector_of_the_wrong_length_is_left_out_and_named_not_the_whole_index(histogram_index, caplog):
    with ImageIndex.open(histogram_index) as index:
        damaged = int(index.ids()[2])
        path = index.record(damaged).path
    with sqlite3.connect(IndexFolder(histogram_index).database) as db:
        db.execute("UPDATE images SET vector = ? WHERE id = ?", (b"\0" * 12, damaged))
    for copy in histogram_index.glob("vectors-*"):
        copy.unlink()  # so it is rebuilt from the database
    with ImageIndex.open(histogram_index) as index:
        assert len(index) == 8
        query = int(index.ids()[0])
        found = {m.id for m in index.search(id=query, k=8).matches}
        assert found == set(index.ids().tolist()) - {query, damaged}  # the others are all searched
        with pytest.raises(IndexFormatError, match=f"images.sqlite, image id {damaged} .*3 values, the model makes"):
            index.search(id=damaged, k=3)
    assert f"image id {damaged} ({path})" in caplog.text
    record_figure("folder", case="one SQLite vector of the wrong length",
                  before="all input arrays must have the same shape: the index does not open",
                  now="opens; the other 7 images searched; a warning names images.sqlite, the id and the path")
    with ImageIndex.open(histogram_index) as index:  # its saved copy lacks that row: used, not rebuilt each time
        index.remove_ids([damaged])
        index.add_files([path])
        assert len(index.search(id=int(index.ids()[0]), k=8).matches) == 7  # every other image again


def test_a_writer_lock_that_is_a_folder_is_named_not_a_traceback(histogram_index, photo_folder, capsys):
    lock = IndexFolder(histogram_index).writer_lock
    lock.unlink(missing_ok=True)
    lock.mkdir()
    capsys.readouterr()
    assert main(["add", str(next(photo_folder.rglob("*.png"))), "--index", str(histogram_index)]) == 2
    error = capsys.readouterr().err
    assert f"{lock} is a folder, not the lock file" in error and "Traceback" not in error, error
    record_figure("folder", case="writer.lock is a folder", before="IsADirectoryError traceback",
                  now="exit 2: " + error.strip().replace(str(histogram_index), "INDEX"))


def test_an_index_folder_whose_name_is_not_utf8_indexes_and_searches(tmp_path, photo_folder, capsys):
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9-index"))
    assert main(["index", str(photo_folder), "--index", str(folder), "--model", "color-histogram",
                 "--index-type", "hnsw"]) == 0
    with ImageIndex.open(folder) as index:
        assert len(index) == 8 and len(index.search(id=int(index.ids()[0]), k=3).matches) == 3
    assert any(name.startswith("hnsw-") for name in os.listdir(folder))
    record_figure("folder", case="index folder name not UTF-8 (caf\\xe9-index)",
                  before="SWIG TypeError from faiss.write_index / read_index", now="indexes, opens and searches")


@pytest.fixture
def read_only_disk(tmp_path):
    """A tmpfs of its own, made read-only once filled; skipped where this process may not mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_an_index_on_a_read_only_file_system_is_named_so_not_damaged(read_only_disk, histogram_index, capsys):
    shutil.copytree(histogram_index, read_only_disk / "idx")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_disk)], check=True)
    capsys.readouterr()
    assert main(["info", "--index", str(read_only_disk / "idx")]) == 2
    error = capsys.readouterr().err
    assert "the file system is read-only (EROFS)" in error and "damaged" not in error, error
    with pytest.raises(UnwritableError):
        ImageIndex.open(read_only_disk / "idx")
    record_figure("folder", case="index on a read-only file system",
                  before="images.sqlite is damaged ... restore it from a backup, or index the photos again",
                  now="exit 2: " + error.strip().replace(str(read_only_disk / "idx"), "INDEX"))
