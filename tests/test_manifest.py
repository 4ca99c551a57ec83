"""The manifest: what an index folder is, and refusal of what this version cannot read."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lookalike.index import ImageIndex, delete_index
from lookalike.index.manifest import FORMAT_VERSION, IndexFormatError, Manifest, read_manifest


def test_index_records_its_model_and_reports_info(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
        info = index.info()
    assert (info["model"], info["dimension"], info["count"], info["index_type"]) == \
        ("efficientnet-lite0", 1280, 8, "flat-ip")
    assert info["disk_bytes"] > 8 * 1280 * 4
    assert read_manifest(tmp_path / "idx").embedder["preprocessing"].endswith("(x-127)/128")


def test_index_from_a_newer_version_is_refused(tmp_path):
    ImageIndex.create(tmp_path / "idx").close()
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="newer lookalike"):
        ImageIndex.open(tmp_path / "idx")


def test_damaged_manifest_is_reported(tmp_path):
    ImageIndex.create(tmp_path / "idx").close()
    (tmp_path / "idx" / "manifest.json").write_text("{ half a fi")
    with pytest.raises(IndexFormatError, match="damaged"):
        ImageIndex.open(tmp_path / "idx")


def test_creating_over_an_existing_index_is_refused(tmp_path):
    ImageIndex.create(tmp_path / "idx").close()
    with pytest.raises(FileExistsError):
        ImageIndex.create(tmp_path / "idx")


def test_delete_refuses_a_folder_that_is_not_an_index(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(IndexFormatError):
        delete_index(tmp_path / "photos")
    assert (tmp_path / "photos").exists()


def test_the_manifest_is_immutable_and_round_trips_through_its_file(tmp_path):
    with ImageIndex.create(tmp_path / "idx", pca=0, dba=0) as index:
        manifest = index.manifest
        with pytest.raises(dataclasses.FrozenInstanceError):
            manifest.index_type = "hnsw"  # type: ignore[misc]
        assert read_manifest(tmp_path / "idx") == manifest
        assert (manifest.reduction_plan, manifest.augmentation_plan, manifest.store) == (None, None, None)
    written = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert {f.name for f in dataclasses.fields(Manifest)} | {"format"} == set(written)  # every field, none implied


def test_a_manifest_of_an_earlier_format_is_upgraded_by_opening_not_read_as_this_one(tmp_path):
    ImageIndex.create(tmp_path / "idx").close()
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest | {"format_version": 1}))
    with pytest.raises(IndexFormatError, match="format 1: open it with ImageIndex.open"):
        read_manifest(tmp_path / "idx")
    ImageIndex.open(tmp_path / "idx").close()
    assert read_manifest(tmp_path / "idx").format_version == FORMAT_VERSION
