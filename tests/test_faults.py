"""Damaged and surprising index folders: a clear IndexFormatError or a rebuilt derived file, never a traceback."""

from __future__ import annotations

import shutil

import pytest
from conftest import write_photo

from lookalike.cli import main
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
        assert reopened.searchable_vectors([int(reopened.ids()[0])]).shape[1] == 1280


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
