"""A full disk while indexing: one clear line (exit 2, no traceback), the index still opens and searches its last
committed state, a failed run gives back the space it took, and the next run after space is freed completes.

Two ways to fill it: a file-size limit (RLIMIT_FSIZE, EFBIG) on a `lookalike` process, which works anywhere, and
a small tmpfs filled up (ENOSPC), where this machine lets the tests mount one.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DEMO_GALLERY, REPO
from recovery import (
    Answers,
    answers_of,
    check_no_leftovers,
    check_opens_and_searches_what_sqlite_holds,
    record_figure,
)

from lookalike.cli import main
from lookalike.faults import CRASH_AT
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder

MODEL = ["--model", "color-histogram"]  # 1 KiB vectors, milliseconds per photo: file sizes are easy to reason on
KIB = 1024


@dataclass(frozen=True)
class Photos:
    base: Path  # 100 demo photos, indexed before the disk fills
    more: Path  # the other 44, indexed while it is full


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Photos:
    root = tmp_path_factory.mktemp("photos")
    every = sorted(DEMO_GALLERY.rglob("*.jpg"))
    for number, photo in enumerate(every):
        target = root / ("base" if number < 100 else "more") / f"{photo.parent.name}-{photo.name}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(photo, target)
    return Photos(root / "base", root / "more")


@pytest.fixture(scope="module")
def base_index(tmp_path_factory, photos) -> Path:
    folder = tmp_path_factory.mktemp("base") / "idx"
    assert main(["index", str(photos.base), "--index", str(folder), *MODEL]) == 0
    return folder


@pytest.fixture(scope="module")
def clean_index(tmp_path_factory, photos, base_index) -> Path:
    """The index once `more` is added with room to spare."""
    folder = tmp_path_factory.mktemp("clean") / "idx"
    shutil.copytree(base_index, folder)
    assert main(["index", str(photos.more), "--index", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def clean(clean_index) -> Answers:
    return answers_of(clean_index)


@dataclass(frozen=True)
class Growth:
    """What adding `more` to the base index has written when its vector file is saved: the write-ahead log (of
    its commit), the log's shared memory, and the new vector file."""

    log: int
    shared_memory: int
    vectors: int


@pytest.fixture(scope="module")
def growth(tmp_path_factory, base_index, photos, clean_index) -> Growth:
    """Measured on a copy by a run killed right after its commit (crash point sync.saving: nothing checkpoints
    the log), and on the clean index (its vector file)."""
    probe = tmp_path_factory.mktemp("probe") / "idx"
    shutil.copytree(base_index, probe)
    killed = subprocess.run([sys.executable, "-m", "lookalike", "index", str(photos.more), "--index", str(probe)],
                            cwd=REPO, capture_output=True, timeout=120, env=os.environ | {CRASH_AT: "sync.saving"})
    assert killed.returncode == -9, killed.stderr
    database = IndexFolder(probe).database
    sizes = Growth(os.path.getsize(f"{database}-wal"), os.path.getsize(f"{database}-shm"),
                   sum(f.stat().st_size for f in clean_index.glob("vectors-*.faiss")))
    assert sizes.vectors > sizes.log + 16 * KIB, sizes  # so a limit can let the commit through and stop the save
    return sizes


def one_clear_line(stderr: str, says: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("lookalike: error:")]
    assert "Traceback" not in stderr and len(errors) == 1, stderr
    assert says in errors[0] and "free some space and run the command again" in errors[0], errors[0]
    return errors[0]


# --- a file-size limit (anywhere) ------------------------------------------------------------------
def file_size_limit(limit: int) -> Callable[[], None]:
    """Run in the child before it starts: files may not grow past `limit` bytes (writes fail with EFBIG)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing it
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def limited_run(limit: int, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lookalike", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, preexec_fn=file_size_limit(limit))


@pytest.mark.parametrize("where", ["commit", "save"])
def test_a_file_size_limit_is_one_clear_line_and_the_next_run_completes(
        where, photos, base_index, clean, growth, tmp_path):
    """Files limited to just over the database's shared memory: the write-ahead log of 44 new photos cannot grow,
    so their commit fails; to half way between the log and the new vector file: the commit fits, the save not."""
    limit = growth.shared_memory + 4 * KIB if where == "commit" else (growth.log + growth.vectors) // 2
    folder = tmp_path / "idx"
    shutil.copytree(base_index, folder)
    before = set(answers_of(folder))
    ended = limited_run(limit, "index", photos.more, "--index", folder)
    assert ended.returncode == 2
    line = one_clear_line(ended.stderr, "a file grew past the size this file system or this process's limit allows")
    kept = check_opens_and_searches_what_sqlite_holds(folder)
    assert kept == (before if where == "commit" else set(clean))
    assert not list(folder.glob("*.partial*"))
    assert main(["index", str(photos.more), "--index", str(folder)]) == 0
    assert answers_of(folder) == clean
    check_no_leftovers(folder)
    record_figure("disk full", way=f"file-size limit {limit // KIB} KiB (EFBIG)", during=where, exit=2,
                  message=line.replace(str(folder), "INDEX"),
                  searchable=len(kept), after_rerun=len(clean))


# --- a small disk filled up (where mounting is allowed) ---------------------------------------------------
@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own; skipped where this process may not mount one (it needs CAP_SYS_ADMIN)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); the file-size limit tests run")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill the disk up to `leave` free bytes."""
    with open(disk / "filler", "ab") as filler:
        filler.write(bytes(max(0, shutil.disk_usage(disk).free - leave)))


def test_a_disk_filled_while_indexing_keeps_the_index_and_takes_no_space(
        small_disk, photos, base_index, clean, capsys):
    folder = small_disk / "idx"
    shutil.copytree(base_index, folder)
    before = set(answers_of(folder))
    fill(small_disk, leave=48 * KIB)  # room to open the database (32 KiB of shared memory), not to commit
    free = shutil.disk_usage(small_disk).free
    for _ in range(2):  # a failed run gives back what it took: the second one fails alike
        capsys.readouterr()
        assert main(["index", str(photos.more), "--index", str(folder)]) == 2
        line = one_clear_line(capsys.readouterr().err, "no space left on the device")
        assert shutil.disk_usage(small_disk).free == free
    assert check_opens_and_searches_what_sqlite_holds(folder) == before
    (small_disk / "filler").unlink()
    assert main(["index", str(photos.more), "--index", str(folder)]) == 0
    assert answers_of(folder) == clean
    check_no_leftovers(folder)
    record_figure("disk full", way="full tmpfs, 48 KiB free (ENOSPC)", during="commit, twice", exit=2,
                  message=line.replace(str(folder), "INDEX"),
                  searchable=len(before), after_rerun=len(clean))


def test_a_disk_filled_while_saving_the_vector_file_keeps_the_commit(
        small_disk, photos, base_index, clean, growth, capsys):
    folder = small_disk / "idx"
    shutil.copytree(base_index, folder)
    fill(small_disk, leave=growth.shared_memory + growth.log + growth.vectors // 2)  # the commit fits, the save not
    capsys.readouterr()
    assert main(["index", str(photos.more), "--index", str(folder)]) == 2
    line = one_clear_line(capsys.readouterr().err, "no space left on the device")
    assert not list(folder.glob("*.partial*"))
    assert check_opens_and_searches_what_sqlite_holds(folder) == set(clean)  # committed, searchable, rebuilt
    (small_disk / "filler").unlink()
    assert main(["index", str(photos.more), "--index", str(folder)]) == 0
    assert answers_of(folder) == clean
    check_no_leftovers(folder)
    record_figure("disk full", way="full tmpfs (ENOSPC)", during="save", exit=2,
                  message=line.replace(str(folder), "INDEX"),
                  searchable=len(clean), after_rerun=len(clean))


def test_an_index_on_a_full_disk_says_the_disk_is_full_not_that_it_is_damaged(small_disk, base_index, capsys):
    folder = small_disk / "idx"
    shutil.copytree(base_index, folder)
    fill(small_disk, leave=8 * KIB)  # not even room for the database's shared memory
    capsys.readouterr()
    assert main(["info", "--index", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "no space left on the device" in error and "damaged" not in error, error
    (small_disk / "filler").unlink()
    assert main(["info", "--index", str(folder)]) == 0
    record_figure("disk full", way="full tmpfs, 8 KiB free (ENOSPC)", during="open", exit=2,
                  message=error.strip().splitlines()[-1].replace(str(folder), "INDEX"), searchable=None,
                  after_rerun=None)


def test_a_disk_filled_at_any_moment_of_a_pca_fit_is_clear_and_the_next_run_completes(
        small_disk, base_index, capsys):
    """`lookalike pca` run again and again on one index, with a little more free space each time: the runs meet
    the full disk at later and later moments of the fit (commit, rebuild, pca.npz, manifest, augmentation, vector
    file); each failed one leaves an index that opens and searches what SQLite holds, and the first run with
    enough room completes without any repair."""
    images = len(answers_of(base_index))
    folder = small_disk / "idx"
    shutil.copytree(base_index, folder)
    failed = []
    for leave in range(32 * KIB, 1024 * KIB, 40 * KIB):
        (small_disk / "filler").unlink(missing_ok=True)
        fill(small_disk, leave)
        capsys.readouterr()
        if main(["pca", "--index", str(folder), "--components", "8"]) == 0:
            break
        failed.append(leave)
        one_clear_line(capsys.readouterr().err, "no space left on the device")
        assert not list(folder.glob("*.partial*"))
        assert len(check_opens_and_searches_what_sqlite_holds(folder)) == images
    else:
        pytest.fail("a PCA fit never succeeded, even with 1 MiB free")
    assert len(failed) >= 3, failed  # the sweep met the full disk at several moments
    record_figure("disk full", way=f"full tmpfs, {failed[0] // KIB}-{failed[-1] // KIB} KiB free (ENOSPC)",
                  during=f"lookalike pca, {len(failed)} moments", exit=2, message="(as above)",
                  searchable=images, after_rerun=images)
    with ImageIndex.open(folder) as index:
        assert index.reduction.dimension == 8
    check_no_leftovers(folder)


@pytest.mark.parametrize("leave", [4 * KIB, 40 * KIB], ids=["no room for the upload", "no room to commit it"])
def test_an_upload_to_a_server_whose_disk_is_full_is_a_507_and_the_server_keeps_serving(
        leave, small_disk, base_index, photos):
    from fastapi.testclient import TestClient

    from lookalike.web import ServerSettings, create_app

    folder = small_disk / "idx"
    shutil.copytree(base_index, folder)
    photo = sorted(photos.more.iterdir())[0].read_bytes()
    with TestClient(create_app([folder], ServerSettings()), raise_server_exceptions=False) as client:
        fill(small_disk, leave)
        refused = client.post("/api/indexes/idx/images", files={"files": ("new.jpg", photo, "image/jpeg")})
        assert refused.status_code == 507, refused.text
        assert "no space left on the device" in refused.json()["detail"]
        assert client.get("/ready").json()["indexes"] == {"idx": 100}
        searched = client.post("/api/indexes/idx/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert searched.status_code == 200 and searched.json()["matches"]
        assert not list(IndexFolder(folder).uploads.glob("*"))  # the refused upload's bytes are gone
        (small_disk / "filler").unlink()
        added = client.post("/api/indexes/idx/images", files={"files": ("new.jpg", photo, "image/jpeg")})
        assert added.status_code == 200 and added.json()["count"] == 101, added.text
    record_figure("disk full", way=f"full tmpfs, {leave // KIB} KiB free (ENOSPC)", during="HTTP upload", exit=507,
                  message=refused.json()["detail"].replace(str(folder), "INDEX"), searchable=100, after_rerun=101)
