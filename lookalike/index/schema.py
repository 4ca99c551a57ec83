"""The SQLite schema of images.sqlite and its stepwise upgrades (the store, store.py, is its only user).

A database records the index format its tables are at in `PRAGMA user_version` (format 1 wrote none: 0).
A new database and an old one take the same path: the format-1 tables, then every step after the version
it is at. Each step is one transaction that also sets the version, so a crash leaves the step done or not.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lookalike.index.manifest import FORMAT_VERSION, refuse_newer

FORMAT_1 = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_by_hash ON images (content_hash);
CREATE TABLE IF NOT EXISTS labels (
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS augmented (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    neighbours BLOB NOT NULL,
    similarities BLOB NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS changed_vectors (image_id INTEGER PRIMARY KEY);
"""

# The statements that take a database from the format before to this one, by format.
STEPS: dict[int, str] = {
    2: "CREATE INDEX IF NOT EXISTS labels_by_value ON labels (name, value);",  # `where` filters without a scan
    # what each photo says of its capture (lookalike.capture); an upgraded index reads it with read_capture()
    3: """ALTER TABLE images ADD COLUMN taken TEXT; ALTER TABLE images ADD COLUMN taken_source TEXT;
          ALTER TABLE images ADD COLUMN camera_make TEXT; ALTER TABLE images ADD COLUMN camera_model TEXT;
          ALTER TABLE images ADD COLUMN latitude REAL; ALTER TABLE images ADD COLUMN longitude REAL;
          CREATE INDEX IF NOT EXISTS images_by_taken ON images (taken);
          CREATE INDEX IF NOT EXISTS images_by_camera_and_place ON images (camera_make, camera_model, latitude,
                                                                          longitude);""",  # scanned, not the table
}
assert max(STEPS) == FORMAT_VERSION, "each format names its database step (an empty string when it has none)"


def prepare(db: sqlite3.Connection, folder: Path, up_to: int = FORMAT_VERSION) -> None:
    """Bring an open database (autocommit mode) to format `up_to`: its tables exist, every step is done."""
    db.executescript(FORMAT_1)
    version = database_version(db)
    refuse_newer(folder, version)
    for step in range(version + 1, up_to + 1):
        db.execute("BEGIN IMMEDIATE")  # another process upgrading waits here, then finds the step done
        try:
            if database_version(db) < step:
                for statement in filter(str.strip, STEPS[step].split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def database_version(db: sqlite3.Connection) -> int:
    return max(int(db.execute("PRAGMA user_version").fetchone()[0]), 1)


def upgrade_database(path: Path, up_to: int) -> None:
    """Upgrade the database file in place (what upgrade.py runs before it rewrites the manifest)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 30000")
        prepare(db, path.parent, up_to)
    finally:
        db.close()
