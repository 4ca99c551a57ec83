"""Several serving processes over one index (issue 28): two `lookalike serve` processes on one index folder whose
vectors live on a real Milvus server answer a search the same way, and each sees the other's and the CLI's writes
at its next search. `pytest -k multiserve` (or `-k milvus_server`) runs it; it needs the Milvus server fixture."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clusters import MilvusServer, free_ports, stop_group
from conftest import REPO, write_photo

from lookalike.cli import main
from lookalike.index import ImageIndex

pytest.importorskip("pymilvus")

READY_SECONDS = 180.0


def start_serving(index: Path, port: int) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_API_TOKEN"}
    return subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(index), "--port", str(port)],
                            cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_until_ready(client: httpx.Client, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"lookalike serve exited with {process.returncode}"
        try:
            if client.get("/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"lookalike serve did not become ready in {READY_SECONDS:.0f} s")


@pytest.fixture
def two_servers(milvus_server: MilvusServer, demo_copy: Path, tmp_path: Path) -> Iterator[tuple[Path, list]]:
    """An index of the demo photos on the Milvus server, served by two processes on their own ports."""
    index = tmp_path / "shared"
    with ImageIndex.create(index, store=milvus_server.store("multiserve")) as made:
        made.add_folder(demo_copy)
    processes, clients = [], []
    try:
        for port in free_ports(2):
            processes.append(start_serving(index, port))
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}/api/indexes/{index.name}", timeout=60))
        for client, process in zip(clients, processes, strict=True):
            wait_until_ready(httpx.Client(base_url=str(client.base_url).split("/api/")[0], timeout=5), process)
        yield index, clients
    finally:
        for client in clients:
            client.close()
        for process in processes:
            stop_group(process, signal.SIGTERM)


def ids_for(client: httpx.Client, **params) -> list[int]:
    answer = client.get("/search", params=params)
    assert answer.status_code == 200, answer.text
    return [match["id"] for match in answer.json()["matches"]]


def best_for_upload(client: httpx.Client, photo: bytes) -> int:
    answer = client.post("/search", data={"k": "1"}, files={"image": ("query.png", io.BytesIO(photo), "image/png")})
    assert answer.status_code == 200, answer.text
    return answer.json()["matches"][0]["id"]


@pytest.mark.slow  # a Milvus server (shared with the session) and two serve processes: about 60 s on 2 cores
def test_multiserve_processes_on_one_milvus_server_index_answer_alike_and_see_each_others_writes(
        two_servers: tuple[Path, list], tmp_path: Path) -> None:
    index, (first, second) = two_servers
    for query in (1, 7, 20):
        assert ids_for(first, id=query, k=10) == ids_for(second, id=query, k=10)
    uploaded = write_photo(tmp_path / "uploaded.png", seed=41).read_bytes()
    added = first.post("/images", files=[("files", ("uploaded.png", uploaded, "image/png"))])
    assert added.status_code == 200, added.text
    new_id = added.json()["images"][0]["id"]
    assert best_for_upload(second, uploaded) == new_id  # the other process's write, at its next search

    from_cli = write_photo(tmp_path / "cli" / "from-cli.png", seed=42)
    assert main(["index", str(from_cli.parent), "--index", str(index)]) == 0
    found = {best_for_upload(client, from_cli.read_bytes()) for client in (first, second)}
    assert len(found) == 1 and found != {new_id}
    (tmp_path / "cli" / "labels.csv").write_text("path,kind\nfrom-cli.png,cli\n")
    assert main(["labels", "import", str(tmp_path / "cli" / "labels.csv"), "--index", str(index)]) == 0
    for client in (first, second):  # the CLI's labels, filtered inside Milvus by both processes
        assert ids_for(client, id=1, k=10, where="kind=cli") == list(found)
    for query in (1, new_id):
        assert ids_for(first, id=query, k=10) == ids_for(second, id=query, k=10)
