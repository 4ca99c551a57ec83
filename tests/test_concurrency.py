"""Several processes on one index folder: writers take turns, readers see every commit, saved copies stay true."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_photo

from lookalike.cli import main
from lookalike.index import ImageIndex, IndexBusyError

# Another process: opens the index, starts an indexing run, says so in `ready`, waits for `go`, then adds
# the photos under the optional fourth argument in the same run and finishes it.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lookalike.index import ImageIndex

    folder, ready, go = (Path(a) for a in sys.argv[1:4])
    with ImageIndex.open(folder) as index:
        run = index.sync()
        ready.write_text("ready")
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if len(sys.argv) > 4:
            run.embed(sorted(Path(sys.argv[4]).rglob("*.png")))
        run.finish()
""")


def photos(folder: Path, seeds: range) -> Path:
    for seed in seeds:
        write_photo(folder / f"photo{seed}.png", seed)
    return folder


def start_holder(tmp_path: Path, index: Path, *extra: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """The other process, once its run is open (it holds the writer lock); touch the returned path to let it go."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(index), str(ready), str(go), *map(str, extra)])
    deadline = time.monotonic() + 120
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the holding process did not start its run (exit code {process.poll()})")
        time.sleep(0.02)
    return process, go


def top_id(index: ImageIndex, image_id: int) -> tuple[int, float]:
    """The best match of an image's stored vector, searched as a plain vector (so the image is not excluded)."""
    best = index.search(vector=index.vectors([image_id])[0], k=1).matches[0]
    return best.id, best.score


# --- writers take turns -------------------------------------------------------------------------------
def test_a_writer_in_another_process_refuses_this_one_until_it_finishes(tmp_path):
    with ImageIndex.create(tmp_path / "idx", pca=0) as index:
        index.add_folder(photos(tmp_path / "first", range(4)))
        process, go = start_holder(tmp_path, tmp_path / "idx")
        try:
            started = time.monotonic()
            with pytest.raises(IndexBusyError, match=rf"being written by another process \(pid {process.pid}\)"):
                index.add_folder(photos(tmp_path / "second", range(10, 13)))
            assert time.monotonic() - started < 2  # refused at once, not after waiting
            assert (tmp_path / "idx" / "writer.lock").read_text().strip() == str(process.pid)
            with pytest.raises(IndexBusyError, match="wait for it to finish, or retry"):
                index.set_labels({int(index.ids()[0]): {"colour": "red"}})
            assert len(index) == 4 and index.label_counts() == {}
            assert len(index.search(id=int(index.ids()[0]), k=3).matches) == 3  # readers never wait
        finally:
            go.touch()
            assert process.wait(timeout=120) == 0
        report = index.add_folder(tmp_path / "second")
        assert (report.added, len(index)) == (3, 7)
    with ImageIndex.open(tmp_path / "idx") as reopened:
        assert reopened._store.backend.count == len(reopened) == 7


def test_the_cli_exits_2_with_the_reason_while_another_process_writes(tmp_path, capsys):
    with ImageIndex.create(tmp_path / "idx", pca=0) as index:
        index.add_folder(photos(tmp_path / "first", range(3)))
    process, go = start_holder(tmp_path, tmp_path / "idx")
    try:
        assert main(["index", "--index", str(tmp_path / "idx"), str(photos(tmp_path / "more", range(20, 22)))]) == 2
    finally:
        go.touch()
        assert process.wait(timeout=120) == 0
    error = capsys.readouterr().err
    assert "lookalike: error:" in error and f"being written by another process (pid {process.pid})" in error
    assert "Traceback" not in error
    assert main(["index", "--index", str(tmp_path / "idx"), str(tmp_path / "more")]) == 0


def test_a_second_index_object_in_this_process_is_refused_while_a_run_is_open(tmp_path):
    photos(tmp_path / "first", range(4))
    photos(tmp_path / "second", range(10, 13))
    with ImageIndex.create(tmp_path / "idx", pca=0) as first, ImageIndex.open(tmp_path / "idx") as second:
        run = first.sync()
        run.embed(sorted((tmp_path / "first").glob("*.png")))
        with pytest.raises(IndexBusyError, match=rf"another ImageIndex in this process \(pid {os.getpid()}\)"):
            second.add_folder(tmp_path / "second")
        for write in (lambda: second.remove_ids([1]), lambda: second.compact(), lambda: second.fit_pca(2),
                      lambda: second.sync()):
            with pytest.raises(IndexBusyError):
                write()
        first.set_labels({1: {"colour": "red"}})  # the run's own index writes on: the lock is its
        run.finish()
        assert second.add_folder(tmp_path / "second").added == 3
        assert len(first) == len(second) == 7
        with pytest.raises(IndexBusyError), second.sync():
            first.add_folder(tmp_path / "first")  # and now the roles are swapped


def test_a_run_that_raises_drops_its_uncommitted_work_and_lets_go(tmp_path):
    photos(tmp_path / "first", range(4))
    with ImageIndex.create(tmp_path / "idx", pca=0) as first, ImageIndex.open(tmp_path / "idx") as second:
        with pytest.raises(ZeroDivisionError), first.sync() as run:
            run.embed(sorted((tmp_path / "first").glob("*.png")))
            1 / 0  # noqa: B018
        assert len(first) == 0 and first._store.backend.count == 0
        with pytest.raises(RuntimeError, match="run has ended"):
            run.commit()
        with second.sync() as run:  # the lock was let go; a block that ends normally finishes the run
            run.embed(sorted((tmp_path / "first").glob("*.png")))
        assert len(first) == len(second) == 4
        unfinished = first.sync()
        unfinished.close()
        assert second.remove_ids([1]) == 1


def test_a_failed_write_leaves_nothing_half_written_and_lets_go(tmp_path):
    with ImageIndex.create(tmp_path / "idx", pca=0) as first, ImageIndex.open(tmp_path / "idx") as second:
        first.add_folder(photos(tmp_path / "first", range(3)))
        with pytest.raises(Exception, match="FOREIGN KEY"):
            first.set_labels({1: {"colour": "red"}, 999: {"colour": "blue"}})  # no image 999
        assert first.label_counts() == {}
        second.set_labels({1: {"colour": "green"}})
        assert first.labels(1) == {"colour": "green"}



def test_an_indexing_run_that_fails_lets_go_and_keeps_only_what_it_committed(tmp_path, monkeypatch):
    photos(tmp_path / "first", range(3))
    with ImageIndex.create(tmp_path / "idx", pca=0) as first, ImageIndex.open(tmp_path / "idx") as second:
        first.add_folder(tmp_path / "first")
        photos(tmp_path / "first", range(3, 5))

        def broken(batch):
            raise OSError("the disk went away")

        monkeypatch.setattr(first.embedder, "embed_batch", broken)
        with pytest.raises(OSError, match="disk went away"):
            first.add_folder(tmp_path / "first")
        assert second.add_folder(tmp_path / "first").added == 2
        assert len(first) == 5 and first._store.backend.count == 5

# --- readers see other processes' commits ------------------------------------------------------------
def test_a_long_lived_index_sees_another_process_add_photos(tmp_path):
    with ImageIndex.create(tmp_path / "idx", pca=0) as server:
        server.add_folder(photos(tmp_path / "first", range(4)))
        assert len(server.search(id=1, k=10).matches) == 3
        process, go = start_holder(tmp_path, tmp_path / "idx", photos(tmp_path / "second", range(10, 13)))
        go.touch()
        assert process.wait(timeout=120) == 0
        assert len(server) == 7 and server.info()["count"] == 7
        added = server.record_by_path(tmp_path / "second" / "photo11.png")
        assert top_id(server, added.id) == (added.id, pytest.approx(1.0, abs=0.05))
        assert len(server.search(id=1, k=10).matches) == 6


def test_a_reader_never_returns_an_image_another_writer_removed(tmp_path):
    folder = photos(tmp_path / "photos", range(6))
    with ImageIndex.create(tmp_path / "idx", pca=0) as reader, ImageIndex.open(tmp_path / "idx") as writer:
        reader.add_folder(folder)
        gone = reader.record_by_path(folder / "photo2.png")
        assert gone.id in [m.id for m in reader.search(id=1, k=10).matches]
        writer.remove_files([folder / "photo2.png", folder / "photo4.png"])
        added = photos(tmp_path / "late", range(30, 31)) / "photo30.png"
        writer.add_files([added])
        found = [m.id for m in reader.search(id=1, k=10).matches]
        assert gone.id not in found and len(found) == 4
        new = reader.record_by_path(added)
        assert top_id(reader, new.id) == (new.id, pytest.approx(1.0, abs=0.05))
        assert reader._store.backend.count == len(reader) == 5


def test_a_match_whose_image_vanished_since_the_search_is_skipped(tmp_path):
    with ImageIndex.create(tmp_path / "idx", pca=0) as index:
        index.add_folder(photos(tmp_path / "photos", range(3)))
        from lookalike.index.read_vectors import ReadVectors
        from lookalike.search import ResolvedQuery

        query = ResolvedQuery(index._store.vectors([1])[0], "<vector>")
        matches = index.searcher._matches([(999, 0.9), (1, 0.5), (2, 0.4)], query, ReadVectors(), 10)
        assert [(m.id, m.score) for m in matches] == [(1, 0.5), (2, 0.4)]
        assert matches[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_a_reader_adopts_the_pca_another_process_fitted(tmp_path):
    with ImageIndex.create(tmp_path / "idx", pca=0) as reader, ImageIndex.open(tmp_path / "idx") as writer:
        reader.add_folder(photos(tmp_path / "photos", range(8)))
        assert reader.search(id=1, k=3).matches and reader.reduction is None
        writer.fit_pca(4)
        assert top_id(reader, 3) == (3, pytest.approx(1.0, abs=0.05))
        assert reader.reduction is not None and reader.reduction.dimension == 4
        assert reader.manifest.reduction == writer.manifest.reduction
        assert reader._store.backend.dimension == 4


# --- a saved copy holds exactly its generation ----------------------------------------------------------
def assert_saved_copy_matches_the_database(folder: Path) -> None:
    """A fresh open (which trusts the saved copy of the current generation) ranks as a rebuild from SQLite."""
    with ImageIndex.open(folder) as trusted:
        assert (folder / f"vectors-{trusted.generation}.faiss").exists()
        from_copy = {int(i): [m.id for m in trusted.search(id=int(i), k=20).matches] for i in trusted.ids()}
    for copy in folder.glob("vectors-*"):
        copy.unlink()
    with ImageIndex.open(folder) as rebuilt:
        assert {int(i): [m.id for m in rebuilt.search(id=int(i), k=20).matches] for i in rebuilt.ids()} == from_copy


def replace_one_photo(index_folder: Path, folder: Path, finish: bool = True) -> None:
    """Another index object removes photo0 and adds photo50: the count stays, the vectors change. Without
    `finish` it commits and closes, never saving: as if its process died right after the commit."""
    late = photos(folder.parent / "late", range(50, 51))
    other = ImageIndex.open(index_folder)
    run = other.sync()
    run.remove_files([folder / "photo0.png"])
    run.embed([late / "photo50.png"])
    if finish:
        run.finish()
    else:
        run.commit()
    other.close()


@pytest.fixture
def stale_index(tmp_path):
    """An index of six photos, opened here; the tests let another process commit behind its back."""
    folder = photos(tmp_path / "photos", range(6))
    index = ImageIndex.create(tmp_path / "idx", pca=0)
    index.add_folder(folder)
    yield index, folder
    index.close()


def test_a_writer_that_missed_another_process_commit_writes_on_the_current_vectors(tmp_path, stale_index):
    stale, folder = stale_index
    with stale:
        replace_one_photo(tmp_path / "idx", folder)
        stale.add_files(photos(tmp_path / "more", range(60, 61)).glob("*.png"))
        assert stale._store.backend.count == len(stale) == 7
    assert_saved_copy_matches_the_database(tmp_path / "idx")


def test_saving_after_another_process_committed_saves_what_the_database_holds(tmp_path, stale_index):
    stale, folder = stale_index
    with stale:
        gone = stale.record_by_path(folder / "photo0.png").id
        replace_one_photo(tmp_path / "idx", folder, finish=False)
        assert not (tmp_path / "idx" / f"vectors-{stale.generation}.faiss").exists()
        assert stale.remove_ids([gone]) == 0  # the other process removed it already; the copy is saved now
    assert_saved_copy_matches_the_database(tmp_path / "idx")


def test_the_store_saves_only_the_generation_its_backend_reflects(tmp_path, stale_index):
    stale, folder = stale_index
    with stale:
        replace_one_photo(tmp_path / "idx", folder, finish=False)
        stale._store.save()
        ids = np.sort(stale.ids())
        held = stale.searcher.indexed_vectors(ids.tolist())  # as the backend holds them (augmented)
        found = np.sort(stale._store.search(held, 1, searchable=True)[1][:, 0])
        np.testing.assert_array_equal(found, ids)
        assert stale._store.backend_generation == stale.generation
    assert_saved_copy_matches_the_database(tmp_path / "idx")


def test_a_store_write_after_another_process_commit_starts_from_the_current_vectors(tmp_path, stale_index):
    stale, folder = stale_index
    with stale:
        last = stale.record_by_path(folder / "photo5.png").id
        replace_one_photo(tmp_path / "idx", folder, finish=False)
        stale._store.remove([last])  # the store's own write, not through ImageIndex's catching up
        stale._store.commit()
        stale._store.save()
        assert stale._store.backend.count == len(stale._store) == 5
    assert_saved_copy_matches_the_database(tmp_path / "idx")
