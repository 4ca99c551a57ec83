"""Real servers for the tests: a Milvus standalone server and a two-node Ray cluster, each started on free
loopback ports in a scratch folder and stopped by its own process id (never by name).

Both are skipped with the reason where their package is missing, and a failure when CI=true, as
conftest.require_dataset does for the shared photos.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


def dies_with_this_process(death_signal: int) -> Callable[[], None]:
    """A preexec_fn: the child is sent `death_signal` when the test process dies without its teardown (killed by a
    timeout, say), so that no server outlives the run that started it (Linux's PR_SET_PDEATHSIG)."""
    def arrange() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, death_signal)  # 1: PR_SET_PDEATHSIG
    return arrange


def stop_group(process: subprocess.Popen, first_signal: int = signal.SIGINT) -> None:
    """Ask the process to stop, then kill what is left of its process group (its own id: it leads the group) and of
    its descendants that made sessions of their own (Ray's workers do)."""
    children = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(first_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    kill_group(process, children)


def kill_group(process: subprocess.Popen, children: list[int] | None = None) -> None:
    """SIGKILL the process group led by `process` (started with start_new_session) and its descendants."""
    children = descendants(process.pid) if children is None else children
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    process.wait(timeout=STOP_SECONDS)


def parent_of(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def descendants(ancestor: int) -> list[int]:
    """The processes below `ancestor` now, whatever their process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = parent_of(int(entry.name))
            while pid > 1 and pid != ancestor:
                pid = parent_of(pid)
            if pid == ancestor:
                found.append(int(entry.name))
    return found


class MilvusServer:
    """`milvus-server` (the PyPI package `milvus`: Milvus standalone with its etcd and local storage) in a folder.

    The data folder outlives stop() and kill(), so start() again is a restart on the same data and port.
    One at a time per machine: the embedded etcd of milvus 2.3.5 listens on the fixed peer port 127.0.0.1:2380 (the
    package offers no option for it), so a second server started meanwhile, by another test run, fails to start.
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
                                                start_new_session=True,
                                                preexec_fn=dies_with_this_process(signal.SIGTERM))
            else:
                command = [self.program, "--data", str(self.folder)]
                for name, port in self.ports.items():
                    command += [f"--{name.replace('_', '-')}-port", str(port)]
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True,
                                                preexec_fn=dies_with_this_process(signal.SIGINT))
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


RAY_NODE_PORTS = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc",
                  "runtime-env-agent", "metrics-export")
RAY_WORKER_PORTS = 12  # one per Ray worker process the node may start (actors, tasks)
RAY_READY_SECONDS = 90.0


class RayNodes:
    """A Ray cluster of separate node processes on this machine: `ray start --head`, then `ray start --address`
    for each worker node, each started with --block so that its process (and its process group) is the node."""

    def __init__(self, program: str, temp_dir: Path, cpus_per_node: int = 1):
        self.program = program
        self.temp_dir = temp_dir  # short: Ray's unix sockets live under it (107 characters at most)
        self.cpus_per_node = cpus_per_node
        self.port = free_ports(1)[0]
        self.nodes: list[subprocess.Popen] = []
        # Ray 2.60 turns token authentication on for `ray start` once ~/.ray/auth_token exists (any local ray.init()
        # writes one), but `ray status` and a driver do not always present it: the nodes never list. A loopback test
        # cluster has no one to keep out, so this process, its nodes and its drivers agree on no tokens.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_node(self, head: bool = False) -> subprocess.Popen:
        ports = free_ports(len(RAY_NODE_PORTS) + RAY_WORKER_PORTS + 1)
        command = [self.program, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus",
                   str(self.cpus_per_node), "--object-store-memory", str(200 * 2**20), "--disable-usage-stats",
                   "--worker-port-list", ",".join(map(str, ports[len(RAY_NODE_PORTS):-1]))]
        for name, port in zip(RAY_NODE_PORTS, ports, strict=False):
            command += [f"--{name}-port", str(port)]
        if head:
            command += ["--head", "--port", str(self.port), "--ray-client-server-port", str(ports[-1]),
                        "--include-dashboard", "false", "--temp-dir", str(self.temp_dir)]
        else:
            command += ["--address", self.address]
        environment = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                                                  if p)}
        log = open(self.temp_dir.with_suffix(f".node{len(self.nodes)}.log"), "a")  # noqa: SIM115 - the node keeps it
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=environment, start_new_session=True,
                                preexec_fn=dies_with_this_process(signal.SIGTERM))
        log.close()
        self.nodes.append(node)
        self._wait_for_nodes(len([n for n in self.nodes if n.poll() is None]))
        return node

    def _wait_for_nodes(self, count: int) -> None:
        """Until the cluster lists `count` live nodes."""
        deadline = time.monotonic() + RAY_READY_SECONDS
        while time.monotonic() < deadline:
            listed = subprocess.run([self.program, "status", "--address", self.address], capture_output=True,
                                    text=True, timeout=60)
            if listed.returncode == 0 and listed.stdout.count(" node_") >= count:
                return
            time.sleep(1)
        raise TimeoutError(f"the Ray cluster at {self.address} did not list {count} nodes in {RAY_READY_SECONDS:.0f} s")

    def kill_node(self, node: subprocess.Popen) -> None:
        """As a machine lost: SIGKILL to the node's processes (raylet, object store, its workers)."""
        kill_group(node)
        self.nodes.remove(node)

    def stop(self) -> None:
        """Worker nodes first, then the head; each by its own process group."""
        for node in reversed(self.nodes):
            stop_group(node, signal.SIGTERM)
        self.nodes.clear()


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_nodes() -> Iterator[RayNodes]:
    """A head and a worker node, 1 CPU each, for the session (about 15 s to start)."""
    pytest.importorskip("ray")
    import tempfile

    cluster = RayNodes(require_program("ray", "ray[data]"), Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp")))
    try:
        cluster.start_node(head=True)
        cluster.start_node()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        for log in cluster.temp_dir.parent.glob(f"{cluster.temp_dir.name}.node*.log"):
            log.unlink()
