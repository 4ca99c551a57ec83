"""Capture data through indexing and search: every way in stores the date taken (EXIF, else the file's time),
camera and place; `where` filters on taken and camera, `near` on the place, `sort` orders by the date; an index
written before (format 1) reads its photos' capture without embedding again."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import write_photo
from exif_photos import write_exif_photo

from lookalike.errors import RequestError
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder
from lookalike.search import SearchOptions

PHOTOS = {  # name: (EXIF date, make, model, place)
    "paris-2021.jpg": ("2021:06:01 14:30:00", "Canon", "Canon EOS 5D", (48.8584, 2.2945)),
    "versailles-2021.jpg": ("2021:12:31 23:59:59", "Canon", "Canon EOS R5", (48.8049, 2.1204)),
    "newyork-2019.jpg": ("2019:01:05 08:00:00", "NIKON CORPORATION", "NIKON D750", (40.6892, -74.0445)),
    "london-2022.jpg": ("2022:01:01 00:00:00", "Apple", "iPhone 12", (51.5007, -0.1246)),
}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Four photos with EXIF and one without (dated by its file: 2020-03-15 12:00 local time)."""
    folder = tmp_path / "shots"
    for seed, (name, (taken, make, model, place)) in enumerate(PHOTOS.items()):
        write_exif_photo(folder / name, seed, taken, make, model, place)
    plain = write_photo(folder / "plain.png", 9)
    stamp = datetime(2020, 3, 15, 12, 0, 0).timestamp()
    os.utime(plain, (stamp, stamp))
    return folder


@pytest.fixture
def index(tmp_path: Path, shots: Path) -> ImageIndex:
    with ImageIndex.create(tmp_path / "index", model="color-histogram", pca=0, dba=0) as made:
        made.add_folder(shots)
        yield made


def names(result) -> list[str]:
    return [Path(match.path).name for match in result.matches]


def found(index: ImageIndex, **options) -> set[str]:
    """Every image the filters leave (the query is a photo that is not indexed, so nothing is left out for it)."""
    query = write_photo(index.folder.parent / "query.png", 42)
    return set(names(index.search(query, k=10, **options)))


def test_indexing_stores_the_exif_capture_and_dates_the_rest_by_file(index):
    records = {Path(r.path).name: r.capture for r in index.records()}
    paris = records["paris-2021.jpg"]
    assert (paris.taken, paris.taken_source, paris.camera) == ("2021-06-01T14:30:00", "exif", "Canon EOS 5D")
    assert (paris.latitude, paris.longitude) == pytest.approx((48.8584, 2.2945), abs=1e-6)
    plain = records["plain.png"]
    assert (plain.taken, plain.taken_source, plain.camera, plain.latitude) == ("2020-03-15T12:00:00", "file", None,
                                                                               None)


def test_a_match_shows_when_where_and_with_what_it_was_taken(index):
    paris = index.record_by_path(next(r.path for r in index.records() if r.path.endswith("paris-2021.jpg")))
    match = index.search(id=paris.id, k=4).matches
    shown = {Path(m.path).name: m for m in match}
    versailles = shown["versailles-2021.jpg"]
    assert (versailles.taken, versailles.taken_source, versailles.camera) == ("2021-12-31T23:59:59", "exif",
                                                                              "Canon EOS R5")
    as_json = index.search(id=paris.id, k=4).to_dict()["matches"]
    assert {m["taken"] for m in as_json} <= {"2021-12-31T23:59:59", "2019-01-05T08:00:00", "2022-01-01T00:00:00",
                                             "2020-03-15T12:00:00"}
    assert all({"taken", "taken_source", "camera", "latitude", "longitude"} <= set(m) for m in as_json)


@pytest.mark.parametrize(("where", "expected"), [
    (["taken>=2021-01-01", "taken<2022-01-01"], {"paris-2021.jpg", "versailles-2021.jpg"}),
    (["taken=2021"], {"paris-2021.jpg", "versailles-2021.jpg"}),
    (["taken<=2021-12-31"], {"paris-2021.jpg", "versailles-2021.jpg", "newyork-2019.jpg", "plain.png"}),
    (["taken>2021-12-31"], {"london-2022.jpg"}),
    (["taken<2020"], {"newyork-2019.jpg"}),
    (["taken=2020-03"], {"plain.png"}),
    (["taken=2019", "taken=2022"], {"newyork-2019.jpg", "london-2022.jpg"}),
    (["taken>=2021-06-01T14:30", "taken<2021-06-01T14:31"], {"paris-2021.jpg"}),
    (["camera=Canon EOS 5D"], {"paris-2021.jpg"}),
    (["camera=canon"], {"paris-2021.jpg", "versailles-2021.jpg"}),
    (["camera=nikon d750"], {"newyork-2019.jpg"}),
    (["camera=apple iphone 12"], {"london-2022.jpg"}),
    (["camera=Canon", "taken>=2021-07"], {"versailles-2021.jpg"}),
])
def test_where_filters_on_the_date_taken_and_the_camera(index, where, expected):
    assert found(index, where=where) == expected


def test_near_keeps_the_photos_within_a_great_circle_distance(index):
    assert found(index, near="48.8566,2.3522,10") == {"paris-2021.jpg"}  # the Eiffel tower is 4.2 km away
    assert found(index, near="48.8566,2.3522,20") == {"paris-2021.jpg", "versailles-2021.jpg"}  # Versailles 17 km
    assert found(index, near="48.8566,2.3522,400") == {"paris-2021.jpg", "versailles-2021.jpg", "london-2022.jpg"}
    assert found(index, near="40.7,-74.0,5", where=["taken<2020"]) == {"newyork-2019.jpg"}
    assert index.search(random=True, seed=0, near="0,0,1").matches == []  # and says why, in its note


@pytest.mark.parametrize(("sort", "newest_first"), [("taken", False), ("-taken", True)])
def test_sort_orders_the_best_matches_by_the_date_taken(index, sort, newest_first):
    ranked = index.search(random=True, seed=2, k=3)
    dated = index.search(random=True, seed=2, k=3, sort=sort)
    assert set(names(dated)) == set(names(ranked))  # the same k best, in another order
    taken = [m.taken for m in dated.matches]
    assert taken == sorted(taken, reverse=newest_first)


def test_label_filters_work_beside_the_capture_ones(index, shots):
    ids = {Path(r.path).name: r.id for r in index.records()}
    index.set_labels({ids["paris-2021.jpg"]: {"trip": "france"}, ids["versailles-2021.jpg"]: {"trip": "france"},
                      ids["london-2022.jpg"]: {"trip": "uk"}})
    assert found(index, where=["trip=France", "taken>=2021-07"]) == {"versailles-2021.jpg"}
    assert set(index.ids_matching(["trip=uk", "taken>=2022"]).tolist()) == {ids["london-2022.jpg"]}


@pytest.mark.parametrize(("options", "message"), [
    ({"where": ["taken>=yesterday"]}, "taken compares with a date"),
    ({"where": ["taken<2021-02-30"]}, "taken compares with a date"),
    ({"near": "48.8,2.3"}, "near is LAT,LON,KM"),
    ({"near": "91,2.3,5"}, "latitude in"),
    ({"near": "48.8,2.3,-1"}, "at least 0 km"),
    ({"sort": "newest"}, "sort is taken"),
])
def test_bad_capture_filters_are_refused_saying_what_is_expected(options, message):
    with pytest.raises(RequestError, match=message):
        SearchOptions.of(**options)


def test_a_copied_photo_keeps_its_exif_capture_without_embedding(index, shots, tmp_path):
    copy = tmp_path / "elsewhere" / "copy.jpg"
    copy.parent.mkdir()
    shutil.copy(shots / "paris-2021.jpg", copy)
    report = index.add_files([copy])
    assert report.reused == 1
    assert index.record_by_path(copy).capture.taken == "2021-06-01T14:30:00"


def test_upgraded_images_read_their_capture_from_their_files(index):
    """An image stored before format 3 has no capture: read_capture reads it, keeping its vector."""
    ids, vectors = index.vectors()
    with sqlite3.connect(IndexFolder(index.folder).database) as db:
        db.execute("UPDATE images SET taken = NULL, taken_source = NULL, camera_make = NULL, camera_model = NULL, "
                   "latitude = NULL, longitude = NULL")
    assert found(index, where=["taken>=2000"]) == set()
    report = index.read_capture()
    assert (report.images, report.from_exif, report.from_file, report.unreadable) == (5, 4, 1, 0)
    assert found(index, where=["taken>=2021-01-01", "taken<2022-01-01"]) == {"paris-2021.jpg", "versailles-2021.jpg"}
    assert found(index, where=["taken=2020-03-15"]) == {"plain.png"}
    assert np.array_equal(index.vectors()[1], vectors)
    assert index.read_capture().images == 0  # nothing left to read


def test_ray_shards_carry_the_capture_into_the_index(index, tmp_path):
    """The Ray path: a worker's rows (embed_rows) hold the capture, the Parquet shard keeps it, the merge stores it;
    a shard written before shards had capture columns still merges (dated by the file)."""
    import pyarrow.parquet as pq

    from lookalike.scale.distributed import embed_rows, merge_shard, write_shard

    photo = write_exif_photo(tmp_path / "ray" / "tokyo.jpg", 7, "2018:02:03 04:05:06", "FUJIFILM", "X-T3",
                             (35.6586, 139.7454))
    older = write_photo(tmp_path / "ray" / "older.png", 8)
    shard = write_shard(tmp_path, embed_rows(index.embedder, [str(photo)], [photo]))
    old_shard = write_shard(tmp_path, embed_rows(index.embedder, [str(older)], [older]))
    table = pq.read_table(old_shard)
    pq.write_table(table.select(["path", "content_hash", "size", "mtime", "width", "height", "vector", "error"]),
                   old_shard)
    with index.sync() as run:
        merge_shard(run, shard, index.embedder.dimension)
        merge_shard(run, old_shard, index.embedder.dimension)
    tokyo = index.record_by_path(photo).capture
    assert (tokyo.taken, tokyo.taken_source, tokyo.camera) == ("2018-02-03T04:05:06", "exif", "FUJIFILM X-T3")
    assert (tokyo.latitude, tokyo.longitude) == pytest.approx((35.6586, 139.7454), abs=1e-6)
    assert index.record_by_path(older).capture.taken_source == "file"
