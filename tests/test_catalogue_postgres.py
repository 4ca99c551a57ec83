"""The catalogue in PostgreSQL (`catalog="postgresql://..."`, lookalike/index/catalogue.py) against a real server
started by tests/postgres_server.py: the same answers as the SQLite catalogue (ids, order, scores, labels, capture
filters), incremental runs, two processes that see each other's writes at their next search, writers that take
turns, a crash mid-batch that leaves the last committed batch, and a server that is down named in a bounded time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from clusters import free_ports, stop_group
from conftest import REPO, write_photo
from exif_photos import write_exif_photo
from postgres_server import PostgresServer, require_postgres

from lookalike.cli import main
from lookalike.errors import ExtraMissingError, RequestError
from lookalike.index import ImageIndex, IndexBusyError
from lookalike.index import catalogue as catalogue_module
from lookalike.index.catalogue import CatalogueUnavailableError, catalog_manifest
from lookalike.index.manifest import IndexFormatError

SHOTS = {  # name: (EXIF date, make, model, place)
    "paris-2021.jpg": ("2021:06:01 14:30:00", "Canon", "Canon EOS 5D", (48.8584, 2.2945)),
    "versailles-2021.jpg": ("2021:12:31 23:59:59", "Canon", "Canon EOS R5", (48.8049, 2.1204)),
    "newyork-2019.jpg": ("2019:01:05 08:00:00", "NIKON CORPORATION", "NIKON D750", (40.6892, -74.0445)),
    "london-2022.jpg": ("2022:01:01 00:00:00", "Apple", "iPhone 12", (51.5007, -0.1246)),
}
FILTERS = [{}, {"where": ["taken<2020"]}, {"where": ["taken>=2021-07"]}, {"where": ["trip=France"]},
           {"where": ["trip=France", "taken>=2021-07"]}, {"near": "48.8566,2.3522,400"}, {"where": ["camera=canon"]}]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Four photos with EXIF capture data and eight plain ones (dated by their files)."""
    folder = tmp_path / "photos"
    for seed, (name, (taken, make, model, place)) in enumerate(SHOTS.items()):
        write_exif_photo(folder / name, seed, taken, make, model, place)
    for seed in range(10, 18):
        write_photo(folder / f"plain-{seed}.png", seed)
    return folder


def indexed(folder: Path, photos: Path, catalog: str | None = None) -> ImageIndex:
    """An index of the photos (the cheap color-histogram model, the default augmentation), France labelled."""
    index = ImageIndex.create(folder, model="color-histogram", catalog=catalog)
    index.add_folder(photos)
    label(index)
    return index


def label(index: ImageIndex) -> None:
    trips = {r.id: {"trip": "France" if Path(r.path).name[:5] in ("paris", "versa") else "elsewhere"}
             for r in index.records()}
    index.set_labels(trips)


def answers(index: ImageIndex) -> list:
    """Every stored vector searched under every filter: ids, file names and scores in their order."""
    found = []
    for record in sorted(index.records(), key=lambda r: r.id):
        vector = index.vectors([record.id])[0]
        for options in FILTERS:
            matches = index.search(vector=vector, k=6, **options).matches
            found.append([(m.id, Path(m.path).name, round(m.score, 6), m.labels, m.taken, m.camera) for m in matches])
    return found


def searched(index: ImageIndex, vector, k: int, **options) -> list[tuple[int, str]]:
    return [(m.id, Path(m.path).name) for m in index.search(vector=vector, k=k, **options).matches]


def newest(index: ImageIndex) -> tuple[int, object]:
    """The id and stored vector of the image added last."""
    image_id = max(r.id for r in index.records())
    return image_id, index.vectors([image_id])[0]


def catalogue(index: ImageIndex) -> tuple:
    records = sorted((r.id, Path(r.path).name, r.content_hash, r.size, r.capture) for r in index.records())
    return records, index.label_counts()


def test_postgres_catalogue_answers_as_sqlite(tmp_path, photos, postgres_catalog):
    with indexed(tmp_path / "sqlite", photos) as sqlite, indexed(tmp_path / "pg", photos, postgres_catalog) as pg:
        assert pg.manifest.catalog == postgres_catalog and sqlite.manifest.catalog is None
        assert not (tmp_path / "pg" / "images.sqlite").exists()  # nothing of the catalogue in the folder
        assert len(pg) == len(sqlite) == 12
        assert catalogue(pg) == catalogue(sqlite)
        assert answers(pg) == answers(sqlite)
        assert [len(found) for found in answers(pg)[:len(FILTERS)]] == [6, 1, 6, 2, 1, 3, 2]  # the filters filter


def test_postgres_incremental_add_update_delete_as_sqlite(tmp_path, photos, postgres_catalog):
    with indexed(tmp_path / "sqlite", photos) as sqlite, indexed(tmp_path / "pg", photos, postgres_catalog) as pg:
        write_photo(photos / "plain-10.png", 99)  # new content
        (photos / "plain-11.png").unlink()
        write_photo(photos / "plain-new.png", 100)
        shutil.copy(photos / "plain-12.png", photos / "plain-copy.png")  # added, its vector reused
        reports = [index.add_folder(photos) for index in (sqlite, pg)]
        assert [(r.added, r.updated, r.removed, r.reused, r.unchanged) for r in reports] == [(2, 1, 1, 1, 10)] * 2
        assert pg.remove_ids([1]) == sqlite.remove_ids([1]) == 1
        assert len(pg) == len(sqlite) == 12
        assert catalogue(pg) == catalogue(sqlite)
        assert answers(pg) == answers(sqlite)
    with ImageIndex.open(tmp_path / "pg") as reopened:  # through the manifest: the same catalogue
        assert reopened.manifest.catalog == postgres_catalog and len(reopened) == 12
    with pytest.raises(FileExistsError, match="already holds images, of another index"):
        ImageIndex.create(tmp_path / "another", model="color-histogram", catalog=postgres_catalog)


def test_postgres_second_process_sees_writes_at_its_next_search(tmp_path, photos, postgres_catalog, monkeypatch):
    """Two machines' view of one index: each holds a copy of the folder (manifest), the catalogue is shared."""
    monkeypatch.setattr(catalogue_module, "SCAN_ROWS", 5)  # a rebuild from the catalogue reads it in several batches
    with indexed(tmp_path / "a", photos, postgres_catalog) as first:
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        with ImageIndex.open(tmp_path / "b") as second:
            assert len(second) == 12
            new = write_photo(tmp_path / "new.png", 200)
            first.add_files([new])
            new_id, vector = newest(first)
            assert searched(second, vector, 1) == [(new_id, "new.png")]  # caught up: the other's commit is searched
            second.remove_files([new])
            assert new_id not in dict(searched(first, vector, 13))
        other = write_photo(tmp_path / "other.png", 201)
        done = subprocess.run([sys.executable, "-m", "lookalike", "add", str(other), "--index", str(tmp_path / "b")],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert [name for _, name in searched(first, vector, 5, path_prefix=str(other))] == ["other.png"]


def test_postgres_writer_waiting_on_another_says_busy(tmp_path, photos, postgres_catalog):
    with indexed(tmp_path / "a", photos, postgres_catalog) as first:
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        with ImageIndex.open(tmp_path / "b") as second:
            extra = write_photo(tmp_path / "extra.png", 300)
            with first.sync() as run:  # a writer holds the catalogue's writer lock for its whole run
                run.embed_named([extra], None, None)
                with pytest.raises(IndexBusyError) as busy:
                    second.add_files([extra])
                assert busy.value.pid == os.getpid()
                assert "127.0.0.1" in str(busy.value) and "another ImageIndex in this process" in str(busy.value)
                assert len(second) == 12  # the searches go on, and see no uncommitted row
                other = subprocess.run([sys.executable, "-m", "lookalike", "add", str(extra), "--index",
                                        str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=120)
                assert other.returncode == 2 and f"another process (pid {os.getpid()} on " in other.stderr
                run.finish()
            assert len(second) == 13
            assert second.remove_files([extra]).removed == 1  # the lock is free again
        assert len(first) == 12


def test_postgres_write_waiting_on_another_write_says_busy_in_bounded_time(tmp_path, photos, postgres_catalog,
                                                                          monkeypatch):
    """A write transaction waits for another's at most WRITE_WAIT_SECONDS (as SQLite's busy timeout), then says busy
    and holds nothing: the next write, once the other commits, goes through."""
    monkeypatch.setattr(catalogue_module, "WRITE_WAIT_SECONDS", 0.5)
    indexed(tmp_path / "a", photos, postgres_catalog).close()
    first = catalogue_module.PostgresCatalogue(postgres_catalog, tmp_path / "a")
    second = catalogue_module.PostgresCatalogue(postgres_catalog, tmp_path / "a")
    try:
        first.begin()
        started = time.perf_counter()
        with pytest.raises(IndexBusyError, match="another process's write"):
            second.begin()
        assert 0.4 < time.perf_counter() - started < 5 and not second.in_transaction
        first.commit()
        second.begin()
        second.commit()
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("point", ["store.added", "store.committing"])
def test_postgres_crash_mid_batch_leaves_the_last_committed_batch(tmp_path, photos, postgres_catalog, point):
    import psycopg

    def count_and_generation() -> tuple[int, str]:
        with psycopg.connect(postgres_catalog) as connection:
            return (connection.execute("SELECT COUNT(*) FROM images").fetchone()[0],
                    connection.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()[0])

    with indexed(tmp_path / "index", photos, postgres_catalog) as index:
        before = answers(index)
    committed = count_and_generation()
    more = tmp_path / "more"
    for seed in range(40, 46):
        write_photo(more / f"more-{seed}.png", seed)
    argv = [sys.executable, "-m", "lookalike", "index", str(more), "--index", str(tmp_path / "index")]
    crashed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120,
                             env=os.environ | {"LOOKALIKE_CRASH_AT": point})
    assert crashed.returncode == -9, crashed.stderr
    assert count_and_generation() == committed and committed[0] == 12
    with ImageIndex.open(tmp_path / "index") as index:
        assert len(index) == 12 and answers(index) == before
        report = index.add_folder(more)  # the next run completes (the dead writer's lock went with its connection)
        assert (report.added, len(index)) == (6, 18)
        assert sorted(dict(searched(index, newest(index)[1], 18))) == sorted(r.id for r in index.records())


def test_postgres_cli_index_and_search(tmp_path, photos, postgres_catalog, capsys):
    folder = str(tmp_path / "index")
    assert main(["index", str(photos), "--index", folder, "--catalog", postgres_catalog, "--model",
                 "color-histogram", "--json"]) == 0
    capsys.readouterr()
    assert main(["search", str(photos / "paris-2021.jpg"), "--index", folder, "--k", "3"]) == 0
    assert "paris-2021.jpg" in capsys.readouterr().out
    assert main(["info", "--index", folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["catalog"] == postgres_catalog
    with pytest.raises(RequestError, match="keeps its catalogue in"):
        ImageIndex.open(folder, catalog=postgres_catalog.replace("catalogue_", "other_"))


def test_postgres_server_down_is_named_within_bounded_time(tmp_path, photos):
    bin_folder = require_postgres()
    nowhere = f"postgresql://lookalike@127.0.0.1:{PostgresServer(bin_folder).port}/nothing"
    started = time.monotonic()
    with pytest.raises(CatalogueUnavailableError, match=r"127\.0\.0\.1:\d+/nothing"):
        ImageIndex.create(tmp_path / "never", model="color-histogram", catalog=nowhere)
    assert time.monotonic() - started < 15
    server = PostgresServer(bin_folder)
    try:
        server.start()
        catalog = server.new_database()
        indexed(tmp_path / "index", photos, catalog).close()
        with ImageIndex.open(tmp_path / "index") as index:
            before = index.search(photos / "paris-2021.jpg", k=3).matches
            server.stop()
            started = time.monotonic()
            with pytest.raises(ConnectionError, match=f"127.0.0.1:{server.port}/catalogue_1"):
                index.search(photos / "paris-2021.jpg", k=3)
            assert time.monotonic() - started < 15
            server.start()
            assert index.search(photos / "paris-2021.jpg", k=3).matches == before  # a search connects again
            with index.sync() as run:  # a run whose writer lock the server dropped with a restart stops
                server.stop()
                server.start()
                with pytest.raises(ConnectionError, match="writer lock .* was lost"):
                    run.remove_files([photos / "plain-10.png"])
            assert (len(index), index.remove_ids([1])) == (12, 1)  # a new write takes the lock again
    finally:
        server.remove()


def test_postgres_catalog_address_is_checked_before_anything_is_made(tmp_path):
    with pytest.raises(RequestError, match="PGPASSWORD"):
        catalog_manifest("postgresql://me:secret@db.example:5432/photos")
    with pytest.raises(RequestError, match="unknown catalog"):
        ImageIndex.create(tmp_path / "index", model="color-histogram", catalog="mysql://db/photos")
    with pytest.raises(RequestError, match="no database"):
        catalog_manifest("postgresql://me@db.example:5432/")
    assert catalog_manifest(None) == catalog_manifest("sqlite") == {}
    assert not (tmp_path / "index").exists()


def test_postgres_catalog_without_psycopg_names_the_extra(tmp_path, monkeypatch):
    script = ("import sys; sys.modules['psycopg'] = None\n"
              "import lookalike.cli, lookalike.index.image_index\n"
              "from lookalike.index import ImageIndex\n"
              f"ImageIndex.create({str(tmp_path / 'plain')!r}, model='color-histogram').close()\n"
              "print('imported and made a SQLite index')")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ExtraMissingError, match=r"lookalike\[postgres\]"):
        ImageIndex.create(tmp_path / "index", model="color-histogram", catalog="postgresql://me@localhost/photos")


def test_postgres_tables_have_the_columns_of_the_sqlite_tables(tmp_path, postgres_catalog):
    """A format step added to the SQLite schema (schema.STEPS) without its PostgreSQL statements fails here."""
    import psycopg

    ImageIndex.create(tmp_path / "sqlite", model="color-histogram").close()
    ImageIndex.create(tmp_path / "pg", model="color-histogram", catalog=postgres_catalog).close()
    with sqlite3.connect(tmp_path / "sqlite" / "images.sqlite") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                               "'sqlite_%'")]
        sqlite_columns = {(table, row[1]) for table in tables for row in db.execute(f"PRAGMA table_info({table})")}
    with psycopg.connect(postgres_catalog) as connection:
        pg_columns = set(connection.execute("SELECT table_name, column_name FROM information_schema.columns WHERE "
                                            "table_schema = current_schema()").fetchall())
    assert len(sqlite_columns) > 20 and pg_columns == sqlite_columns
    with psycopg.connect(postgres_catalog, autocommit=True) as connection:  # a catalogue of an older format is refused
        connection.execute("UPDATE state SET value = '2' WHERE key = 'format_version'")
    with pytest.raises(IndexFormatError, match="format 2"):
        ImageIndex.open(tmp_path / "pg")


def serving(index: Path) -> tuple[subprocess.Popen, httpx.Client]:
    """`lookalike serve` of an index folder on a free port, once it answers /ready."""
    port = free_ports(1)[0]
    environment = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_API_TOKEN"}
    process = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(index), "--port", str(port)],
                               cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as probe:
        while True:
            assert process.poll() is None, f"lookalike serve exited with {process.returncode}"
            with contextlib.suppress(httpx.TransportError):
                if probe.get("/ready").status_code == 200:
                    break
            assert time.monotonic() < deadline, "lookalike serve did not become ready in 120 s"
            time.sleep(0.3)
    return process, httpx.Client(base_url=f"http://127.0.0.1:{port}/api/indexes/{index.name}", timeout=60)


def test_postgres_two_servers_with_folder_copies_answer_alike_and_see_each_others_writes(tmp_path, photos,
                                                                                       postgres_catalog):
    """Two machines' serving processes: each its own copy of the folder (manifest, its own FAISS copy), one
    catalogue in PostgreSQL; an upload to one is found by the other at its next search."""
    indexed(tmp_path / "one" / "photos-index", photos, postgres_catalog).close()
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    started = [serving(folder / "photos-index") for folder in (tmp_path / "one", tmp_path / "two")]
    try:
        (_, first), (_, second) = started
        for query in (1, 5, 9):
            assert ids_for(first, id=query) == ids_for(second, id=query) != []
        uploaded = write_photo(tmp_path / "uploaded.png", seed=77).read_bytes()
        added = first.post("/images", files=[("files", ("uploaded.png", uploaded, "image/png"))])
        assert added.status_code == 200, added.text
        new_id = added.json()["images"][0]["id"]
        answer = second.post("/search", data={"k": "1"}, files={"image": ("q.png", io.BytesIO(uploaded), "image/png")})
        assert answer.status_code == 200 and answer.json()["matches"][0]["id"] == new_id, answer.text
        assert ids_for(first, id=new_id) == ids_for(second, id=new_id)
    finally:
        for process, client in started:
            client.close()
            stop_group(process, signal.SIGTERM)


def ids_for(client: httpx.Client, **params) -> list[int]:
    answer = client.get("/search", params={"k": 10} | params)
    assert answer.status_code == 200, answer.text
    return [match["id"] for match in answer.json()["matches"]]
