"""The server's journal (lookalike/web/journal.py) in process: jobs answer after a restart, uploads no one will
index are removed on start, a write refused because another process writes is a 409 that leaves no file behind.
A real server killed with SIGKILL mid-batch and mid-job is in test_crash_points.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import wait_for_job, write_photo
from fastapi.testclient import TestClient
from recovery import record_figure

from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder
from lookalike.index.writer import WriterLock
from lookalike.web import ServerSettings, create_app, jobs


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "idx"
    ImageIndex.create(folder, model="color-histogram", pca=0, dba=0).close()
    return folder


def photos(tmp_path: Path, count: int, first_seed: int = 0) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = []
    for seed in range(first_seed, first_seed + count):
        path = write_photo(tmp_path / "uploads-to-send" / f"photo{seed}.png", seed, size=(48, 36))
        files.append(("files", (path.name, path.read_bytes(), "image/png")))
    return files


def client_for(folder: Path, **settings: object) -> TestClient:
    return TestClient(create_app([folder], ServerSettings(**settings)))


def uploads_of(folder: Path) -> list[str]:
    uploads = IndexFolder(folder).uploads
    return sorted(os.listdir(uploads)) if uploads.is_dir() else []


def test_a_finished_job_answers_as_before_after_a_restart(index: Path, tmp_path: Path) -> None:
    with client_for(index) as client:
        started = client.post("/api/indexes/idx/images", params={"background": "true"}, files=photos(tmp_path, 3))
        finished = wait_for_job(client, started.json()["job_url"])
        assert finished["status"] == "done" and finished["report"]["added"] == 3
    with client_for(index) as client:
        again = client.get(started.json()["job_url"])
        assert again.status_code == 200 and again.json() == finished
        assert [job["id"] for job in client.get("/api/jobs").json()] == [finished["id"]]


def test_an_unknown_job_id_says_what_the_server_knows_not_just_no_job(index: Path) -> None:
    with client_for(index) as client:
        answer = client.get("/api/jobs/0123456789abcdef")
    assert answer.status_code == 404
    detail = answer.json()["detail"]
    assert "unknown to this server" in detail and "across restarts" in detail and "/api/indexes/NAME/images" in detail


def test_an_acknowledged_job_a_dead_server_left_runs_again_under_its_id(index: Path, tmp_path: Path) -> None:
    """What a kill -9 after the 202 leaves: the journal entry and the saved files; the next server adds them."""
    saved = []
    for seed in range(3):
        saved.append(write_photo(IndexFolder(index).uploads / f"upload{seed}.png", seed, size=(48, 36)))
    (IndexFolder(index).journal).mkdir()
    entry = {"id": "a" * 32, "kind": "job", "owner": "dead-server", "paths": [str(p) for p in saved],
             "uploads": True, "roots": None, "status": "running", "outcome": {}}
    (IndexFolder(index).journal / f"{'a' * 32}.json").write_text(json.dumps(entry))
    with client_for(index) as client:
        job = wait_for_job(client, f"/api/jobs/{'a' * 32}")
        assert job["status"] == "done" and job["report"]["added"] == 3
        assert client.get("/ready").json()["indexes"] == {"idx": 3}
    assert uploads_of(index) == sorted(p.name for p in saved)


def test_uploads_no_one_will_index_are_removed_on_start_and_indexed_ones_kept(index: Path, tmp_path: Path) -> None:
    with client_for(index) as client:
        kept = client.post("/api/indexes/idx/images", files=photos(tmp_path, 2))
        assert kept.status_code == 200, kept.text
    uploads = IndexFolder(index).uploads
    write_photo(uploads / "orphan-of-a-crash.png", 7, size=(48, 36))
    (uploads / "half-written.png.partial").write_bytes(b"\x89PNG")
    unanswered = {"id": "b" * 32, "kind": "batch", "owner": "dead-server", "paths": [str(uploads / "batch.png")],
                  "uploads": True, "roots": None, "status": "queued", "outcome": {}}
    write_photo(uploads / "batch.png", 8, size=(48, 36))
    IndexFolder(index).journal.joinpath(f"{'b' * 32}.json").write_text(json.dumps(unanswered))
    with client_for(index) as client:
        assert client.get("/ready").json()["indexes"] == {"idx": 2}
    with ImageIndex.open(index) as opened:
        assert sorted(Path(r.path).name for r in opened.records()) == uploads_of(index)
    assert len(uploads_of(index)) == 2
    assert not list(IndexFolder(index).journal.glob("*.json"))


def test_a_write_while_another_process_writes_is_409_with_its_pid_and_leaves_no_file(index: Path,
                                                                                      tmp_path: Path) -> None:
    other = WriterLock(IndexFolder(index).writer_lock)  # another writer of the folder (here: this process)
    with client_for(index) as client, other.holding():
        answer = client.post("/api/indexes/idx/images", files=photos(tmp_path, 2))
        assert answer.status_code == 409, answer.text
        assert answer.json()["writer_pid"] == os.getpid() and answer.headers["retry-after"] == "1"
        assert f"pid {os.getpid()}" in answer.json()["detail"]
        assert uploads_of(index) == []
        record_figure("folder", case="HTTP upload while another process writes the index",
                      before="500, plain text, connection closed",
                      now=f"{answer.status_code} with writer_pid and Retry-After; {len(uploads_of(index))} files left")


def test_a_background_upload_waits_for_another_writer_then_is_added(index: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "BUSY_RETRY_SECONDS", 0.05)
    other = WriterLock(IndexFolder(index).writer_lock)
    with client_for(index) as client:
        with other.holding():
            started = client.post("/api/indexes/idx/images", params={"background": "true"}, files=photos(tmp_path, 2))
            assert started.status_code == 202
            assert client.get(started.json()["job_url"]).json()["status"] in ("queued", "running")
        job = wait_for_job(client, started.json()["job_url"])
    assert job["status"] == "done" and job["report"]["added"] == 2 and len(uploads_of(index)) == 2


def test_a_background_upload_refused_as_busy_leaves_no_file(index: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "BUSY_WAIT_SECONDS", 0.0)
    other = WriterLock(IndexFolder(index).writer_lock)
    with client_for(index) as client, other.holding():
        started = client.post("/api/indexes/idx/images", params={"background": "true"}, files=photos(tmp_path, 2))
        job = wait_for_job(client, started.json()["job_url"])
        assert job["status"] == "failed" and "IndexBusyError" in job["error"]
        assert uploads_of(index) == []
    record_figure("folder", case="background upload refused as busy (after waiting)",
                  before="job failed at once, its file left in INDEX/uploads",
                  now=f"waits for the other writer (300 s by default), then fails; {len(uploads_of(index))} files left")


def test_write_routes_document_409_with_the_writer_pid_and_507(index: Path) -> None:
    with client_for(index) as client:
        schema = client.get("/openapi.json").json()
    writes = [(path, method) for path, methods in schema["paths"].items() for method in methods
              if method in ("post", "delete") and path.startswith("/api/indexes")
              and not path.endswith(("/search", "/explain"))]  # POSTs that read: an upload to search or explain
    assert len(writes) >= 5
    for path, method in writes:
        documented = schema["paths"][path][method]["responses"]
        assert {"409", "507"} <= set(documented), (path, method, sorted(documented))
    assert "writer_pid" in schema["components"]["schemas"]["ErrorBody"]["properties"]


@pytest.mark.parametrize("field", [{"dba_alpha": False}, {"whiten": 1, "pca": 4}, {"pca": True}, {"dba": 2.0},
                                   {"latency_ms": "5"}, {"expected_count": True}])
def test_request_bodies_take_no_boolean_for_a_number_nor_a_number_for_a_boolean(tmp_path: Path, field: dict) -> None:
    with TestClient(create_app([], ServerSettings(index_root=tmp_path))) as client:
        answer = client.post("/api/indexes", json={"name": "new", "model": "color-histogram", **field})
        assert answer.status_code == 422, answer.text
        assert next(iter(field)) in answer.json()["detail"]
        created = client.post("/api/indexes", json={"name": "new", "model": "color-histogram", "dba_alpha": 2,
                                                     "whiten": False, "pca": 0})
        assert created.status_code == 201, created.text


def test_the_same_photo_in_two_batches_is_one_file_and_no_entry_is_left(index: Path, tmp_path: Path) -> None:
    one = photos(tmp_path, 1)
    with client_for(index) as client:
        for _ in range(2):
            assert client.post("/api/indexes/idx/images", files=one).status_code == 200
    assert len(uploads_of(index)) == 1 and not list(IndexFolder(index).journal.glob("*.json"))
    assert (IndexFolder(index).uploads / uploads_of(index)[0]).read_bytes() == one[0][1][1]
