"""Killed at every crash point (lookalike/faults.py): each command leaves an index that opens, searches exactly
what SQLite holds (nothing half-written), equals a rebuild from SQLite, and finishes the work when run again.

Each command runs in a fork of one process that imported the CLI once (the import costs seconds; a fork, none),
and kills itself with SIGKILL at its crash point; one case runs `python -m lookalike` as a user would, and a
real `lookalike serve` is killed while it indexes an upload batch.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import DEMO_GALLERY, REPO, wait_for_job, write_photo
from recovery import (
    answers_of,
    check_no_leftovers,
    check_opens_and_searches_what_sqlite_holds,
    database_rows,
    record_figure,
)

from lookalike.cli import main
from lookalike.faults import CRASH_AT, CRASH_POINTS
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder

MODEL = ["--model", "color-histogram"]  # a real embedder that needs no network weights: milliseconds per photo

# One process that imports the CLI once, then runs each command it is sent (a JSON line: argv, crash point,
# log file) in a fork of itself and answers with how the fork ended. The parent runs nothing before forking.
LAUNCHER = textwrap.dedent("""
    import json, os, sys, traceback
    from lookalike import faults
    from lookalike.cli import main

    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                faults.ARMED = job["crash_at"]  # what LOOKALIKE_CRASH_AT says in a process started afresh
                log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(log, 1)
                os.dup2(log, 2)
                code = main(job["argv"])
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        print(json.dumps({"signal": signal, "code": os.WEXITSTATUS(status) if not signal else None}), flush=True)
""")


class Launcher:
    def __init__(self) -> None:
        environment = {k: v for k, v in os.environ.items() if k != CRASH_AT}
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=REPO, env=environment)

    def run(self, argv: list[str], crash_at: str | None, log: Path) -> dict:
        """Run one command in a fork; {"signal": 9, ...} when it was killed, {"code": N} when it exited."""
        assert self.process.stdin and self.process.stdout
        job = {"argv": [str(a) for a in argv], "crash_at": crash_at, "log": str(log)}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            pytest.fail(f"the launcher died (exit code {self.process.poll()})")
        return json.loads(answer)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def launcher():
    process = Launcher()
    yield process
    process.close()


# --- photos, starting states and what a clean run makes of them ------------------------------------
@dataclass(frozen=True)
class Photos:
    first: Path  # 12 real photos, 3 of each of 4 kinds
    second: Path  # 8 more, 2 of each of 4 other kinds
    gone: list[Path]  # 3 photos of `first` that `remove` takes out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Photos:
    root = tmp_path_factory.mktemp("photos")
    kinds = sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir())
    for folder, chosen, each in (("first", kinds[:4], 3), ("second", kinds[4:8], 2)):
        for kind in chosen:
            for photo in sorted(kind.glob("*.jpg"))[:each]:
                (root / folder).mkdir(exist_ok=True)
                shutil.copy(photo, root / folder / f"{kind.name}-{photo.name}")
    first = sorted((root / "first").iterdir())
    return Photos(root / "first", root / "second", first[::4][:3])


def command(name: str, photos: Photos, index: Path) -> list[str]:
    """The command line of each command under test."""
    return {
        "index": ["index", photos.first, "--index", index, *MODEL, "--pca", "4"],
        "add": ["add", *sorted(photos.second.iterdir()), "--index", index],
        "remove": ["remove", *photos.gone, "--index", index],
        "pca": ["pca", "--index", index, "--components", "6"],
        "compact": ["compact", "--index", index],
        "dba": ["dba", "--index", index, "--neighbours", "3"],
    }[name]


@pytest.fixture(scope="module")
def starts(tmp_path_factory, photos) -> dict[str, Path | None]:
    """The index each command starts from (None: no index yet), made once; every case works on a copy."""
    root = tmp_path_factory.mktemp("starts")
    assert main(["index", str(photos.first), "--index", str(root / "flat"), *MODEL, "--pca", "4"]) == 0
    assert main(["index", str(photos.first), "--index", str(root / "hnsw"), *MODEL, "--pca", "0",
                 "--index-type", "hnsw"]) == 0
    assert main(["remove", *map(str, photos.gone), "--index", str(root / "hnsw")]) == 0  # tombstones to compact
    return {"index": None, "add": root / "flat", "remove": root / "flat", "pca": root / "flat",
            "compact": root / "hnsw", "dba": root / "flat"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, photos, starts) -> dict[str, dict]:
    """What each command makes of its starting index when nothing goes wrong: the answers to compare."""
    root = tmp_path_factory.mktemp("clean")
    answers = {}
    for name, start in starts.items():
        index = prepared(start, root / name)
        assert main([str(a) for a in command(name, photos, index)]) == 0
        answers[name] = answers_of(index)
    return answers


def prepared(start: Path | None, folder: Path) -> Path:
    if start is not None:
        shutil.copytree(start, folder)
    return folder


# --- the cases ---------------------------------------------------------------------------------------
CASES = [
    ("index", "manifest.writing"), ("index", "manifest.written"), ("index", "store.added"),
    ("index", "store.committing"), ("index", "store.committed"), ("index", "sync.saving"),
    ("index", "backend.writing"), ("index", "backend.sealing"), ("index", "sync.finishing"),
    ("index", "store.reduction-committed"), ("index", "manifest.writing@2"), ("index", "manifest.written@2"),
    ("index", "store.committed@3"), ("index", "backend.writing@2"),
    ("add", "store.added"), ("add", "store.committing"), ("add", "sync.saving"), ("add", "backend.sealing"),
    ("remove", "store.removed"), ("remove", "store.committed"), ("remove", "backend.writing"),
    ("pca", "store.reduction-committed"), ("pca", "manifest.writing"), ("pca", "manifest.written"),
    ("pca", "backend.writing"),
    ("compact", "store.compacted"), ("compact", "backend.writing"), ("compact", "backend.rows-writing"),
    ("compact", "backend.sealing"),
    ("index", "augmentation.writing"), ("add", "augmentation.writing"), ("remove", "augmentation.writing"),
    ("dba", "augmentation.writing"), ("dba", "store.committed"), ("dba", "backend.writing"),
]


TESTED_ELSEWHERE = {"upgrade.database-upgraded"}  # tests/test_upgrade.py: an old index killed while it upgrades


def test_every_crash_point_is_tested_and_every_tested_one_exists():
    tested = {point.partition("@")[0] for _, point in CASES} | TESTED_ELSEWHERE
    assert tested == set(CRASH_POINTS)
    assert placed_crash_points() == set(CRASH_POINTS)


def placed_crash_points() -> set[str]:
    """The names given to crash_point(...) calls in the package's source."""
    names = set()
    for path in (REPO / "lookalike").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "crash_point" and node.args:
                names.add(ast.literal_eval(node.args[0]))
    return names


@pytest.mark.parametrize(("name", "crash_at"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_a_command_killed_at_a_crash_point_leaves_an_index_that_recovers(
        name, crash_at, launcher, photos, starts, clean, tmp_path):
    folder = prepared(starts[name], tmp_path / "idx")
    before = set(answers_of(folder)) if starts[name] else set()
    argv = command(name, photos, folder)
    ended = launcher.run(argv, crash_at, tmp_path / "crashed.log")
    assert ended["signal"] == 9, f"not killed at {crash_at}: {ended}\n{(tmp_path / 'crashed.log').read_text()}"

    recovery = None
    if IndexFolder(folder).is_index():
        recovery = seconds_to_recover(folder)
        survived = check_opens_and_searches_what_sqlite_holds(folder)
        assert survived in (before, set(clean[name])), "an index between the state before and after the command"
    started = time.perf_counter()
    rerun = launcher.run(argv, None, tmp_path / "rerun.log")
    rerun_seconds = time.perf_counter() - started
    assert rerun == {"signal": 0, "code": 0}, (tmp_path / "rerun.log").read_text()
    assert answers_of(folder) == clean[name]
    check_no_leftovers(folder)
    record_figure("crash", command=name, point=crash_at, recover_ms=recovery and round(recovery * 1e3, 1),
                  healthy_open_ms=round(seconds_to_recover(folder) * 1e3, 1), rerun_ms=round(rerun_seconds * 1e3, 1))


def seconds_to_recover(folder: Path) -> float:
    """Open the index and answer one search (which loads or rebuilds its searchable copy)."""
    started = time.perf_counter()
    with ImageIndex.open(folder) as index:
        if len(index):
            index.search(random=True, k=1)
    return time.perf_counter() - started


def test_the_crash_point_works_in_a_plain_lookalike_process(photos, clean, tmp_path):
    """No launcher: `python -m lookalike`, as a user runs it, killed between the SQLite commit and the save."""
    folder = tmp_path / "idx"
    argv = [sys.executable, "-m", "lookalike", *map(str, command("index", photos, folder))]
    crashed = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=120,
                             env=os.environ | {CRASH_AT: "sync.saving"})
    assert crashed.returncode == -9
    assert check_opens_and_searches_what_sqlite_holds(folder) == set(clean["index"])
    recovery = seconds_to_recover(folder)
    assert main([str(a) for a in argv[3:]]) == 0
    assert answers_of(folder) == clean["index"]
    check_no_leftovers(folder)
    record_figure("crash", command="index (python -m lookalike)", point="sync.saving",
                  recover_ms=round(recovery * 1e3, 1), healthy_open_ms=round(seconds_to_recover(folder) * 1e3, 1),
                  rerun_ms=None)



# --- the server, killed while it indexes an upload batch ----------------------------------------------
@contextmanager
def serving(folder: Path, crash_at: str | None = None) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """`lookalike serve` on loopback over one index, without a token."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if k not in (CRASH_AT, "LOOKALIKE_API_TOKEN")}
    server = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(folder), "--port", str(port)],
                              cwd=REPO, env=environment | ({CRASH_AT: crash_at} if crash_at else {}),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 120
        while server.poll() is None and time.monotonic() < deadline:
            try:
                if client.get("/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"lookalike serve did not become ready (exit code {server.poll()})")
        yield client, server
    finally:
        client.close()
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


def test_a_server_killed_during_an_upload_batch_restarts_with_the_index_whole(photos, starts, clean, tmp_path):
    folder = prepared(starts["add"], tmp_path / "idx")
    before = set(answers_of(folder))
    batch = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(photos.second.iterdir())]
    with serving(folder, crash_at="store.added") as (client, server):
        with pytest.raises(httpx.TransportError):
            client.post("/api/indexes/idx/images", files=batch)
        assert server.wait(timeout=30) == -9
    recovery = seconds_to_recover(folder)
    assert check_opens_and_searches_what_sqlite_holds(folder) == before
    with serving(folder) as (client, _):
        assert client.get("/ready").json()["indexes"] == {"idx": len(before)}
        searched = client.get("/api/indexes/idx/search", params={"random": "true", "k": "3"})
        assert searched.status_code == 200 and len(searched.json()["matches"]) == 3
        again = client.post("/api/indexes/idx/images", files=batch)
        assert again.status_code == 200, again.text
        assert again.json()["count"] == len(before) + len(batch)
    uploads = sorted(IndexFolder(folder).uploads.iterdir())
    with ImageIndex.open(folder) as index:
        assert len(uploads) == len(batch) and all(index.record_by_path(p) is not None for p in uploads)
    check_no_leftovers(folder)
    record_figure("crash", command="serve (upload batch)", point="store.added", recover_ms=round(recovery * 1e3, 1),
                  healthy_open_ms=round(seconds_to_recover(folder) * 1e3, 1), rerun_ms=None)


# --- uploads journalled: a kill -9 loses none acknowledged and orphans none (issue 24) ----------------------------
UPLOADS = 120  # a batch of the size the issue was found with; CHUNK (64) of a job are committed per write lock


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> list[tuple[str, tuple[str, bytes, str]]]:
    folder = tmp_path_factory.mktemp("many")
    paths = [write_photo(folder / f"upload{seed}.png", seed, size=(48, 36)) for seed in range(UPLOADS)]
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


def upload_files(folder: Path) -> list[Path]:
    uploads = IndexFolder(folder).uploads
    return sorted(uploads.iterdir()) if uploads.is_dir() else []


def orphans(folder: Path) -> int:
    """Files in INDEX/uploads that no image of the index is (SQLite, read as it is now)."""
    with ImageIndex.open(folder) as index:
        return sum(index.record_by_path(p) is None for p in upload_files(folder))


def test_a_server_killed_during_a_synchronous_batch_keeps_no_file_of_it_after_restart(
        starts, many_photos, tmp_path):
    folder = prepared(starts["add"], tmp_path / "idx")
    before = database_rows(folder)
    with serving(folder, crash_at="store.added") as (client, server):
        with pytest.raises(httpx.TransportError):
            client.post("/api/indexes/idx/images", files=many_photos)
        assert server.wait(timeout=30) == -9
    left_at_kill = orphans(folder)
    with serving(folder) as (client, _):
        assert client.get("/ready").json()["indexes"] == {"idx": before}  # nothing was acknowledged: none added
    assert upload_files(folder) == [] and database_rows(folder) == before
    check_no_leftovers(folder)
    record_figure("upload crash", during=f"synchronous batch of {UPLOADS}", point="store.added",
                  acknowledged=0, kept=database_rows(folder) - before, orphans_at_kill=left_at_kill,
                  orphans_after_restart=len(upload_files(folder)), job_after_restart=None)


def test_a_server_killed_during_a_background_job_finishes_it_under_its_id_after_restart(
        starts, many_photos, tmp_path):
    folder = prepared(starts["add"], tmp_path / "idx")
    before = database_rows(folder)
    with serving(folder, crash_at="store.committed") as (client, server):  # killed once the first chunk committed
        started = client.post("/api/indexes/idx/images", params={"background": "true"}, files=many_photos)
        assert started.status_code == 202, started.text
        assert server.wait(timeout=60) == -9
    added_at_kill, left_at_kill = database_rows(folder) - before, orphans(folder)
    assert 0 < added_at_kill < UPLOADS
    with serving(folder) as (client, _):
        job = wait_for_job(client, started.json()["job_url"])
        assert job["id"] == started.json()["id"] and job["status"] == "done", job
        assert client.get("/ready").json()["indexes"] == {"idx": before + UPLOADS}
    assert len(upload_files(folder)) == UPLOADS and orphans(folder) == 0
    check_no_leftovers(folder)
    record_figure("upload crash", during=f"background job of {UPLOADS}, killed at {added_at_kill}/{UPLOADS}",
                  point="store.committed", acknowledged=UPLOADS, kept=database_rows(folder) - before,
                  orphans_at_kill=left_at_kill, orphans_after_restart=orphans(folder),
                  job_after_restart=job["status"])
