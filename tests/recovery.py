"""What every fault test checks of an index after the fault: it opens, searches exactly what SQLite (the source
of truth) holds, answers as a rebuild from SQLite does, and keeps no half-written or stale files."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder

Answers = dict[str, list[tuple[str, float]]]


def answers_of(folder: Path, k: int = 5) -> Answers:
    """Each indexed photo's nearest photos (by file name) and scores, searched by its stored vector."""
    with ImageIndex.open(folder) as index:
        return neighbours(index, k)


def neighbours(index: ImageIndex, k: int) -> Answers:
    ids, vectors = index.vectors()
    found = {}
    for image_id, vector in zip(ids.tolist(), vectors, strict=True):
        matches = index.search(vector=vector, k=k).matches
        found[Path(index.record(image_id).path).name] = [(Path(m.path).name, round(m.score, 4)) for m in matches]
    return found


def database_rows(folder: Path) -> int:
    with sqlite3.connect(f"file:{IndexFolder(folder).database}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])


def check_opens_and_searches_what_sqlite_holds(folder: Path) -> set[str]:
    """The index after a crash: it opens, its count is SQLite's, every search finds exactly SQLite's images,
    and its answers equal those of a copy whose vector files were deleted (so rebuilt from SQLite)."""
    with ImageIndex.open(folder) as index:
        count = len(index)
        assert count == database_rows(folder)
        ids, vectors = index.vectors()
        for vector in vectors:
            found = [m.id for m in index.search(vector=vector, k=count).matches]
            assert sorted(found) == sorted(ids.tolist()), "the searchable copy does not hold exactly SQLite's rows"
        answers = neighbours(index, k=5)
    with tempfile.TemporaryDirectory() as scratch:  # not beside the index: its disk may be the full one
        rebuilt = Path(scratch) / folder.name
        shutil.copytree(folder, rebuilt)
        for derived in [*rebuilt.glob("vectors-*"), *rebuilt.glob("hnsw-*")]:
            derived.unlink()
        assert answers_of(rebuilt) == answers
    return set(answers)


def check_no_leftovers(folder: Path) -> None:
    """One saved copy, of the database's generation; no temporary files."""
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if ".partial" in n], names
    with sqlite3.connect(f"file:{IndexFolder(folder).database}?mode=ro", uri=True) as db:
        generation = int(db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()[0])
    copies = {n.split(".")[0] for n in names if n.startswith(("vectors-", "hnsw-"))}
    assert len(copies) == 1 and copies.pop().endswith(f"-{generation}"), names


def record_figure(kind: str, **values: object) -> None:
    """One measured outcome, for benchmarks/faults.py (which sets LOOKALIKE_FAULT_FIGURES to a JSON-lines file)."""
    figures = os.environ.get("LOOKALIKE_FAULT_FIGURES")
    if figures:
        with open(figures, "a", encoding="utf-8") as out:
            out.write(json.dumps({"kind": kind, **values}) + "\n")
