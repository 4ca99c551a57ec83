"""Real servers for the tests: a Milvus standalone server and a two-node Ray cluster, each started on free
loopback ports in a scratch folder and stopped by its own process id (never by name).

Both are skipped with the reason where their package is missing, and a failure when CI=true, as
conftest.require_dataset does for the shared photos.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MILVUS_PORTS = ("etcd", "root_coord", "proxy", "proxy_internal", "query_coord", "query_node", "index_coord",
                "index_node", "data_coord", "data_node")
MILVUS_READY_SECONDS = 180.0
STOP_SECONDS = 10.0
BIN = Path(sys.executable).parent


def require_program(name: str, package: str) -> str:
    """The program's path; skipped with the reason where it is not installed, a failure in CI."""
    program = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if program is None:
        message = f"{name} not found: pip install '{package}' (the dev extras include it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return program


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on at 127.0.0.1 now (all held open together so that they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stop_group(process: subprocess.Popen, first_signal: int = signal.SIGINT) -> None:
    """Ask the process to stop, then kill what is left of its process group (its own id: it leads the group)."""
    if process.poll() is None:
        process.send_signal(first_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group led by `process` (started with start_new_session) and reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_SECONDS)


class MilvusServer:
    """`milvus-server` (the PyPI package `milvus`: Milvus standalone with its etcd and local storage) in a folder.

    The data folder outlives stop() and kill(), so start() again is a restart on the same data and port.
    """

    def __init__(self, program: str, folder: Path):
        self.program = program
        self.folder = folder
        self.ports = dict(zip(MILVUS_PORTS, free_ports(len(MILVUS_PORTS)), strict=True))
        self.process: subprocess.Popen | None = None
        self.starts: list[float] = []  # seconds each start took to answer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['proxy']}"

    def store(self, collection: str) -> str:
        return f"milvus://{self.address}/{collection}"

    def start(self) -> None:
        """The first start runs `milvus-server`, which writes the configuration and unpacks the server into the
        folder; a restart runs that server again with that configuration (the wrapper would pick other ports when
        the old ones are still in TIME_WAIT, and the index records the address)."""
        started = time.perf_counter()
        with open(self.folder.with_suffix(".log"), "a") as log:
            if (self.folder / "configs" / "milvus.yaml").exists():
                self.process = subprocess.Popen([str(self.folder / "bin" / "milvus"), "run", "standalone"],
                                                cwd=self.folder, env=self._server_environment(), stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
            else:
                command = [self.program, "--data", str(self.folder)]
                for name, port in self.ports.items():
                    command += [f"--{name.replace('_', '-')}-port", str(port)]
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_until_ready()
        self.starts.append(time.perf_counter() - started)

    def _server_environment(self) -> dict[str, str]:
        """What milvus-server gives the server it starts (its metrics port free here, not 9091)."""
        binaries = str(self.folder / "bin")
        return os.environ | {"DEPLOY_MODE": "STANDALONE", "METRICS_PORT": str(free_ports(1)[0]),
                             "MILVUS_RUN_DIR": str(self.folder / "run"),
                             "LD_LIBRARY_PATH": os.pathsep.join(p for p in (binaries, os.environ.get("LD_LIBRARY_PATH"))
                                                                if p)}

    def _wait_until_ready(self) -> None:
        """Until a client can list collections (the port opens seconds before the server answers)."""
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        deadline = time.monotonic() + MILVUS_READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milvus-server exited with {self.process.returncode}; see {self.folder}.log")
            try:
                client = MilvusClient(uri=f"http://{self.address}", timeout=3)
                client.list_collections(timeout=3)
                client.close()
                return
            except MilvusException:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"milvus-server did not answer at {self.address} in {MILVUS_READY_SECONDS:.0f} s")

    def stop(self) -> None:
        """Milvus-server stops its server on SIGINT, the server itself on SIGTERM; what is left is killed."""
        if self.process is not None:
            stop_group(self.process, signal.SIGINT if self.process.args[0] == self.program else signal.SIGTERM)
            self.process = None

    def kill(self) -> None:
        """As a crash: SIGKILL to the wrapper and the server at once."""
        if self.process is not None:
            kill_group(self.process)
            self.process = None


def start_milvus_server(folder: Path) -> Iterator[MilvusServer]:
    server = MilvusServer(require_program("milvus-server", "milvus==2.3.5"), folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """One Milvus server for the test session (it takes 5-30 s to start)."""
    pytest.importorskip("pymilvus")
    yield from start_milvus_server(tmp_path_factory.mktemp("milvus-server") / "data")
