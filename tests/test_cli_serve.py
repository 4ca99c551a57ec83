"""The serve verb: its argument checks, and a real server started on a missing and an empty folder."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, write_photo

from lookalike.cli import main
from lookalike.index.folder import IndexFolder


def test_serve_refuses_a_folder_that_is_not_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"not an index")
    assert main(["serve", "--index", str(tmp_path)]) == 2
    assert "is not a lookalike index and not empty" in capsys.readouterr().err


def test_serve_refuses_an_allowed_root_that_does_not_exist(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--index", str(tmp_path / "new"), "--allowed-roots", str(tmp_path / "missing")]) == 2
    assert "--allowed-roots" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # nothing is created when an argument is wrong


def test_serve_needs_an_index() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png_bytes(tmp_path: Path, seed: int) -> bytes:
    return write_photo(tmp_path / f"upload{seed}.png", seed).read_bytes()


@pytest.fixture
def server_on_new_folders(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path, Path]]:
    """`lookalike serve` (no --model) on a folder that does not exist and on an empty one."""
    missing, empty = tmp_path / "missing-index", tmp_path / "empty-index"
    empty.mkdir()
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_API_TOKEN"}
    server = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(missing),
                               "--index", str(empty), "--port", str(port)],
                              cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        _wait_until_serving(client, server)
        yield client, missing, empty
    finally:
        client.close()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(client: httpx.Client, server: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"lookalike serve exited with {server.returncode}:\n{server.stdout.read()}")
        try:
            if client.get("/api/indexes").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("lookalike serve did not answer in time")


def test_serve_on_a_missing_and_an_empty_folder_accepts_uploads_and_finds_them(server_on_new_folders, tmp_path):
    client, missing, empty = server_on_new_folders
    names = {entry["name"]: entry for entry in client.get("/api/indexes").json()}
    assert set(names) == {"missing-index", "empty-index"}
    assert IndexFolder(missing).is_index() and IndexFolder(empty).is_index()
    for seed, name in enumerate(names):
        upload, other = png_bytes(tmp_path, seed), png_bytes(tmp_path, seed + 10)
        added = client.post(f"/api/indexes/{name}/images",
                            files=[("files", ("mine.png", upload, "image/png")),
                                   ("files", ("other.png", other, "image/png"))])
        assert added.status_code == 200, added.text
        uploaded = {image["uploaded_as"]: image["id"] for image in added.json()["images"]}
        found = client.post(f"/api/indexes/{name}/search", data={"k": "2"},
                            files={"image": ("query.png", io.BytesIO(upload), "image/png")})
        assert found.status_code == 200, found.text
        best = found.json()["matches"][0]
        assert best["id"] == uploaded["mine.png"] and best["score"] > 0.99


# --- slow and idle clients (issue 24) ----------------------------------------------------------------------------
def few_descriptors() -> None:
    """In the server's process: a limit of 256 open descriptors (so 300 connections would exhaust it)."""
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server has closed the connection (after a 408 or 503, or without a word)."""
    connection.settimeout(0.5)
    try:
        while data := connection.recv(4096):
            if not data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")):
                return False
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_idle_and_trickling_connections_are_closed_and_searches_still_answer(tmp_path: Path) -> None:
    """300 connections that never finish a request (idle, headers a byte at a time, a body a byte at a time) on a
    server with 256 descriptors and 1 s timeouts: a new client is answered while they are held, each is closed
    within seconds, searches then answer, and the log's warnings say so in a few lines, not one per connection
    (each request the app began keeps its one info line)."""
    write_photo(tmp_path / "photos" / "a.png", seed=1)
    index = tmp_path / "idx"
    assert main(["index", str(tmp_path / "photos"), "--index", str(index), "--model", "color-histogram"]) == 0
    port, log = free_port(), tmp_path / "server.log"
    environment = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_API_TOKEN"} | {
        "LOOKALIKE_HEADER_TIMEOUT_SECONDS": "1", "LOOKALIKE_BODY_TIMEOUT_SECONDS": "1"}
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(index),
                                   "--port", str(port)], cwd=REPO, env=environment, stdout=output, stderr=output,
                                  text=True, preexec_fn=few_descriptors)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    upload = {"image": ("q.png", png_bytes(tmp_path, 1), "image/png")}
    try:
        _wait_until_serving(client, server)
        starts = [b"", b"GET /api/indexes HTTP/1.1\r\nHost: x\r\n",
                  b"POST /api/indexes/idx/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                  b"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"]
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        for number, connection in enumerate(connections):
            connection.sendall(starts[number % 3])
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as fresh:  # makes room: the longest idle goes
            meanwhile = fresh.post("/api/indexes/idx/search", data={"k": "1"}, files=upload).status_code
        for _ in range(10):  # trickle: a byte every 0.25 s, for longer than the timeouts
            time.sleep(0.25)
            for number, connection in enumerate(connections):
                if number % 3:
                    with contextlib.suppress(OSError):
                        connection.send(b"x" if number % 3 == 2 else b"X")
        still_open = [c for c in connections if not closed_by_server(c)]
        for connection in connections:
            connection.close()
        statuses = [client.post("/api/indexes/idx/search", data={"k": "1"}, files=upload).status_code
                    for _ in range(8)]
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=20)
    assert meanwhile == 200 and len(still_open) == 0 and statuses == [200] * 8
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    problems = collections.Counter(e["message"][:80] for e in entries if e["level"] in ("warning", "error"))
    requests = [e for e in entries if e["message"] == "request"]
    assert sum(problems.values()) < 30, f"warnings and errors repeat: {problems.most_common(3)}"
    assert len(requests) <= 110, f"{len(requests)} request lines for 100 requests that began and 9 searches"
