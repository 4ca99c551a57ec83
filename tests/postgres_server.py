"""A real PostgreSQL server for the tests (and benchmarks/catalogue.py): Debian's PostgreSQL (`initdb`, `postgres`
under /usr/lib/postgresql/VERSION/bin) run in a scratch folder on a free loopback port, its unix socket in that
folder too, stopped by its own process id.

initdb and postgres refuse to run as root: as root they run as the Debian `postgres` user, the scratch folder
(outside pytest's root-only temporary folder) given to it. Skipped with the reason where PostgreSQL or psycopg is
missing (scripts/install-test-tools installs the first, the dev extra the second), a failure when CI=true.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusters import dies_with_this_process, free_ports, stop_group

READY_SECONDS = 60.0
USER = "lookalike"  # the superuser initdb makes; connections on loopback are trusted (a scratch server)


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def require_postgres() -> Path:
    """PostgreSQL's bin folder; skipped with the reason where it or psycopg is missing, a failure in CI."""
    missing = []
    if postgres_bin() is None:
        missing.append("PostgreSQL not installed (/usr/lib/postgresql/*/bin/initdb): scripts/install-test-tools "
                       "installs it (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing.append("psycopg not installed: pip install 'lookalike[postgres]' (the dev extras include it)")
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))
    return postgres_bin()  # type: ignore[return-value]


class PostgresServer:
    """One PostgreSQL cluster in a scratch folder. `settings` are extra `-c name=value` server settings."""

    def __init__(self, bin_folder: Path, settings: dict[str, str] | None = None):
        self.bin = bin_folder
        self.folder = Path(tempfile.mkdtemp(prefix="lookalike-postgres-"))
        self.data = self.folder / "data"
        self.port = free_ports(1)[0]
        self.settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.folder),
                         "max_connections": "100", "shared_buffers": "32MB"} | (settings or {})
        self.process: subprocess.Popen | None = None
        self._account = pwd.getpwnam("postgres") if os.getuid() == 0 else None
        if self._account is not None:
            os.chown(self.folder, self._account.pw_uid, self._account.pw_gid)
        self._databases = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server: its catalog address."""
        import psycopg

        self._databases += 1
        name = f"catalogue_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def start(self) -> None:
        if not self.data.exists():
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync",
                       "-E", "UTF8", "--locale=C.UTF-8"])
        options = [item for name, value in self.settings.items() for item in ("-c", f"{name}={value}")]
        with open(self.folder / "log", "ab") as log:  # the server keeps its own copy of the descriptor
            self.process = subprocess.Popen([str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                                             *options], stdout=subprocess.DEVNULL, stderr=log,
                                            preexec_fn=self._as_postgres(dies=True), start_new_session=True)
        self._wait_until_ready()

    def stop(self) -> None:
        """A fast shutdown (SIGINT: open transactions rolled back, then a clean stop); what is left is killed."""
        if self.process is not None:
            stop_group(self.process, signal.SIGINT)
            self.process = None

    def kill(self) -> None:
        """As a crash of the server machine's process: SIGKILL to the postmaster's group."""
        if self.process is not None:
            stop_group(self.process, signal.SIGKILL)
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, preexec_fn=self._as_postgres(dies=False),
                              cwd=self.folder, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr or done.stdout}")

    def _as_postgres(self, dies: bool):
        """A preexec_fn: become the postgres account (as root), then die with this process (set after the change
        of user, which clears it)."""
        account, arrange = self._account, dies_with_this_process(signal.SIGKILL) if dies else None

        def become() -> None:
            if account is not None:
                os.setgid(account.pw_gid)
                os.setgroups([])
                os.setuid(account.pw_uid)
            if arrange is not None:
                arrange()
        return become

    def _wait_until_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.process.returncode}): {self.log()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not answer in {READY_SECONDS:.0f} s: {self.log()}") from None
                time.sleep(0.1)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "log").read_text()[-2000:]
        return ""


def start_postgres_server(settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    server = PostgresServer(require_postgres(), settings)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test session (it starts in 1-2 s); each test takes a database of its own."""
    yield from start_postgres_server({"fsync": "off"})  # a scratch server: a power cut here loses nothing of value


@pytest.fixture
def postgres_catalog(postgres_server: PostgresServer) -> str:
    """The address of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()
