"""Where an index's catalogue lives (its images, paths, labels, capture, full vectors, augmentation, generation): the
SQLite file in the index folder (the default), or a PostgreSQL database (`catalog="postgresql://USER@HOST:PORT/DB"`),
so that processes on other machines can search and write the same index.

rows.py, store.py and schema.py write their SQL once, in SQLite's dialect, and run it through a Catalogue. This
module is the one place that knows how PostgreSQL differs: its placeholders, its upserts, how an inserted row's id
comes back, how a write starts (an advisory lock where SQLite says BEGIN IMMEDIATE), and the writer lock (a session
advisory lock on the server where SQLite's index keeps a file lock in the folder). Both keep the same guarantees:
each batch is one transaction, writers take turns, the generation tells readers that another process committed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lookalike.errors import ExtraMissingError, RequestError
from lookalike.faults import disk_full_reported
from lookalike.index import schema
from lookalike.index.folder import DATABASE, MANIFEST, IndexFolder
from lookalike.index.writer import IndexBusyError, WriterLock

SCHEMES = ("postgresql://", "postgres://")
CONNECT_SECONDS = 10  # a server that is down or unreachable is reported after this long, not waited on
TCP_SECONDS = 20  # a connection whose server stops answering mid-query (keepalives, tcp_user_timeout)
LOCK_CLASS = 0x6C6B  # 'lk': lookalike's advisory locks are (LOCK_CLASS, one of these)
WRITER, WRITING = 1, 2  # the writer lock (a whole run) and the lock a write transaction takes (BEGIN IMMEDIATE's)
SCAN_ROWS = 4096  # rows a scan of the whole catalogue fetches at once (5 KB each with 1,280-d vectors)
SCANS = itertools.count()  # names of server-side cursors
HELD: dict[str, PostgresWriterLock] = {}  # the writer lock this process holds, by catalogue (one at most: they exclude)


WRITE_WAIT_SECONDS = 5.0  # a write waits this long for another's transaction, then says busy (SQLite's timeout)


class _LockWaitEndedError(Exception):
    """A lock was not granted within the statement's lock_timeout."""


class CatalogueUnavailableError(ConnectionError):
    """The PostgreSQL server holding the catalogue cannot be reached, or stopped answering."""


def catalog_manifest(catalog: str | None) -> dict[str, Any]:
    """Manifest entries for a `catalog` choice: nothing for SQLite in the index folder (the default)."""
    if catalog is None or catalog == "sqlite":
        return {}
    if not catalog.startswith(SCHEMES):
        raise RequestError(f"unknown catalog {catalog!r}: use sqlite (the default, a file in the index folder) or "
                           "postgresql://USER@HOST:PORT/DATABASE")
    parts = urlsplit(catalog)
    if parts.password:
        raise RequestError("give the catalogue's password in PGPASSWORD or ~/.pgpass, not in the address: the address "
                           "is written in the index's manifest")
    if not parts.path.strip("/"):
        raise RequestError(f"no database in {catalog!r}; expected postgresql://USER@HOST:PORT/DATABASE")
    _psycopg()
    return {"catalog": catalog}


def open_catalogue(folder: Path, catalog: str | None) -> SQLiteCatalogue | PostgresCatalogue:
    """The catalogue of the index in `folder`, ready for this format (its tables made or upgraded)."""
    return SQLiteCatalogue(folder) if catalog is None else PostgresCatalogue(catalog, folder)


def writer_lock(folder: Path, catalog: str | None) -> WriterLock:
    """The right to write the index: a file lock in its folder, or an advisory lock on the catalogue's server."""
    return WriterLock(IndexFolder(folder).writer_lock) if catalog is None else PostgresWriterLock(catalog)


class SQLiteCatalogue:
    """The catalogue in the index folder's SQLite file, in write-ahead-log mode: readers never wait for a writer."""

    def __init__(self, folder: Path):
        self.where = str(folder / DATABASE)
        self.db = sqlite3.connect(folder / DATABASE, isolation_level=None, check_same_thread=False)
        with disk_full_reported(folder, writer=False):  # a full disk is not a damaged database
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            schema.prepare(self.db, folder)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def scan(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of a query over the whole catalogue, as they are read (a SQLite cursor streams them)."""
        return self.db.execute(sql, params)

    def insert(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert rows into a table with an `id` column; their new ids, in order."""
        return [int(self.db.execute(sql, row).lastrowid or 0) for row in rows]

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")  # another writer's transaction: wait (busy timeout), then "locked"

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:  # a COMMIT that failed (disk full) has rolled back already
            self.db.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def close(self) -> None:
        self.db.close()  # what was not committed is rolled back (closing twice does nothing)

    @staticmethod
    def orphaned(folder: Path) -> str:
        """Why a new index cannot be made in `folder` whose catalogue already holds images."""
        return (f"{folder} holds images but no {MANIFEST}: restore it from a backup, or index the photos again into "
                "a new folder")


class PostgresCatalogue:
    """The catalogue in a PostgreSQL database: one connection in autocommit mode (each read sees what is committed
    now, as SQLite's do), a write is BEGIN ... COMMIT under a transaction advisory lock."""

    def __init__(self, location: str, folder: Path):
        self.where = address(location)
        self.location = location
        self.db = connect(location)
        self._writing = False  # between begin() and commit() or rollback()
        schema.prepare_postgres(self, folder)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            with self._answered():
                return self.db.execute(postgres_sql(sql), params)
        except CatalogueUnavailableError:
            if self._writing or not sql.startswith(("SELECT", "BEGIN")) or not self.db.closed:
                raise
        # A read, or the start of a write, on a connection the server closed (it restarted): connect again, once.
        # A statement inside a write is not retried, and begin() refuses when the run's writer lock went with it.
        self.db = connect(self.location)
        with self._answered():
            return self.db.execute(postgres_sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._answered(), self.db.cursor() as cursor:
            cursor.executemany(postgres_sql(sql), list(rows))

    def scan(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of a query over the whole catalogue, SCAN_ROWS at a time from a server-side cursor (a plain
        query would bring every row, every vector of a million images, into this process at once). Other
        statements may run between batches."""
        with self._answered():
            cursor = self.db.cursor(name=f"lookalike_scan_{next(SCANS)}", withhold=True)  # autocommit: WITH HOLD
            cursor.execute(postgres_sql(sql), params)
        try:
            while True:
                with self._answered():
                    rows = cursor.fetchmany(SCAN_ROWS)
                if not rows:
                    return
                yield from rows
        finally:
            with contextlib.suppress(Exception):  # a lost connection took the cursor with it
                cursor.close()

    def insert(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert rows (in one pipeline: one round trip for the batch) and return their new ids, in order."""
        if not rows:
            return []
        ids = []
        with self._answered(), self.db.cursor() as cursor:
            cursor.executemany(postgres_sql(sql) + " RETURNING id", list(rows), returning=True)
            while True:
                ids.append(int(cursor.fetchone()[0]))
                if not cursor.nextset():
                    return ids

    def begin(self) -> None:
        self.execute("BEGIN")
        self._writing = True
        self.execute(f"SET LOCAL lock_timeout = '{WRITE_WAIT_SECONDS * 1000:.0f}ms'")  # as SQLite's busy timeout
        try:
            with self._answered():  # writers commit in turn
                self.db.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, WRITING))
        except _LockWaitEndedError:
            self.rollback()
            raise IndexBusyError(f"the index catalogue {self.where} is in another process's write for over "
                                 f"{WRITE_WAIT_SECONDS:.0f} s: wait for it to finish, or retry later") from None
        held = HELD.get(self.location)
        if held is not None and not held.alive():  # the run's writer lock went with a server restart
            self.rollback()
            raise CatalogueUnavailableError(f"the writer lock on the PostgreSQL catalogue at {self.where} was lost "
                                            "with its connection (did the server restart?): run the write again")

    def commit(self) -> None:
        self.execute("COMMIT")
        self._writing = False

    def rollback(self) -> None:
        if self.in_transaction:
            with contextlib.suppress(CatalogueUnavailableError):  # a lost connection: the server rolled it back
                self.execute("ROLLBACK")
        self._writing = False

    @property
    def in_transaction(self) -> bool:
        return self.db.info.transaction_status != _psycopg().pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.db.close()  # what was not committed is rolled back (closing twice does nothing)

    def orphaned(self, folder: Path) -> str:
        """Why a new index cannot be made in `folder` with this catalogue: it holds another index's images."""
        return (f"the PostgreSQL catalogue at {self.where} already holds images, of another index: give an empty "
                f"database for a new index in {folder}, or open the index that uses it (a copy of its folder)")

    @contextlib.contextmanager
    def _answered(self) -> Any:
        """A lost or refused connection comes out as CatalogueUnavailableError naming the server (a lock wait
        that timed out, as _LockWaitEndedError)."""
        try:
            yield
        except _psycopg().errors.LockNotAvailable:
            raise _LockWaitEndedError from None
        except _psycopg().OperationalError as error:
            raise CatalogueUnavailableError(f"the PostgreSQL catalogue at {self.where} did not answer: "
                                            f"{_first_line(error)}") from None


class PostgresWriterLock(WriterLock):
    """The right to write a catalogue in PostgreSQL, from any machine: a session advisory lock held by a connection
    of its own. The server drops it when that connection goes, by a close or by the holder's crash."""

    def __init__(self, location: str):
        super().__init__(Path(address(location)))
        self.location = location
        self._connection: Any = None

    def _take(self) -> None:
        me = f"lookalike writer pid {os.getpid()} on {socket.gethostname()}"
        connection = connect(self.location, application_name=me)
        try:
            if connection.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, WRITER)).fetchone()[0]:
                self._connection, HELD[self.location] = connection, self
                return
            holder = connection.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE "
                "l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (LOCK_CLASS, WRITER)).fetchone()
        except _psycopg().OperationalError as error:
            connection.close()
            raise CatalogueUnavailableError(f"the PostgreSQL catalogue at {self.path} did not answer: "
                                            f"{_first_line(error)}") from None
        connection.close()
        raise _busy(str(self.path), holder[0] if holder else "", me)

    def alive(self) -> bool:
        """Whether the lock is still held: its connection answers (a server restart drops both)."""
        try:
            self._connection.execute("SELECT 1")
            return True
        except Exception:
            return False

    def _give_back(self) -> None:
        if HELD.get(self.location) is self:
            del HELD[self.location]
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a connection already lost holds no lock
                connection.close()


def _busy(where: str, holder: str, me: str) -> IndexBusyError:
    """IndexBusyError naming the writer (its pid when it runs on this machine)."""
    named = holder.removeprefix("lookalike writer ")  # "pid PID on HOST", or "" when it could not be read
    who = f"another ImageIndex in this process ({named})" if holder == me else \
        f"another process ({named})" if named else "another process"
    same_host = holder.endswith(f" on {socket.gethostname()}")
    pid = int(holder.split()[3]) if same_host and holder.split()[3].isdigit() else None
    return IndexBusyError(f"the index catalogue {where} is being written by {who}: wait for it to finish, or retry "
                          "later", pid)


def connect(location: str, application_name: str = "lookalike") -> Any:
    """An autocommit connection to the catalogue's server, given up after CONNECT_SECONDS."""
    psycopg = _psycopg()
    try:
        return psycopg.connect(location, autocommit=True, connect_timeout=CONNECT_SECONDS,
                               application_name=application_name, keepalives=1, keepalives_idle=5,
                               keepalives_interval=2, keepalives_count=3, tcp_user_timeout=TCP_SECONDS * 1000)
    except psycopg.OperationalError as error:
        raise CatalogueUnavailableError(f"cannot reach the PostgreSQL catalogue at {address(location)}: "
                                        f"{_first_line(error)}") from None


def address(location: str) -> str:
    """Where a catalogue is, for messages: HOST:PORT/DATABASE (no user)."""
    parts = urlsplit(location)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}/{parts.path.strip('/')}"


UPSERT = re.compile(r"INSERT OR (REPLACE|IGNORE) INTO (\w+) VALUES (\(.*\))$", re.DOTALL)


@functools.lru_cache(maxsize=256)
def postgres_sql(sql: str) -> str:
    """A statement in SQLite's dialect as PostgreSQL reads it: %s placeholders, INSERT OR REPLACE / IGNORE as
    ON CONFLICT (the keys and columns of each table: schema.REPLACED)."""
    upsert = UPSERT.match(sql)
    if upsert:
        action, table, values = upsert.groups()
        keys, columns = schema.REPLACED[table]
        conflict = "DO NOTHING" if action == "IGNORE" else "DO UPDATE SET " + ", ".join(
            f"{column} = EXCLUDED.{column}" for column in columns)
        sql = f"INSERT INTO {table} VALUES {values} ON CONFLICT ({', '.join(keys)}) {conflict}"
    return sql.replace("%", "%%").replace("?", "%s")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as error:
        raise ExtraMissingError(f"a PostgreSQL catalogue needs psycopg: pip install 'lookalike[postgres]' "
                                f"({error})") from None
    return psycopg
