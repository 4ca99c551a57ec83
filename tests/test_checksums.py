"""Damaged index files are detected (checksums) and rebuilt from the database, never searched."""

from __future__ import annotations

import json
import logging

import pytest

from lookalike.backends.checksums import damage, seal
from lookalike.cli import main
from lookalike.index import ImageIndex, IndexFormatError
from lookalike.index.manifest import FILE


def test_changed_truncated_or_missing_files_are_named(tmp_path):
    files = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for number, path in enumerate(files):
        path.write_bytes(bytes(range(256)) * (number + 1))
    seal(tmp_path / "sums.json", files)
    assert damage(tmp_path / "sums.json") is None
    files[0].write_bytes(bytes(reversed(range(256))))
    assert "corrupted" in damage(tmp_path / "sums.json")
    files[0].write_bytes(bytes(range(256)))
    files[1].write_bytes(files[1].read_bytes()[:100])
    assert "truncated" in damage(tmp_path / "sums.json")
    files[1].unlink()
    assert "missing" in damage(tmp_path / "sums.json")


@pytest.mark.parametrize(("index_type", "pattern", "how"), [
    ("hnsw", "hnsw-*.faiss", "corrupt"), ("hnsw", "hnsw-*.faiss", "truncate"),
    ("ivfpq", "rerank-*.f16", "corrupt"), ("flat-ip", "vectors-*.faiss", "corrupt"),
])
def test_damaged_index_file_is_detected_and_rebuilt(index_type, pattern, how, tmp_path, demo_copy, caplog):
    with ImageIndex.create(tmp_path / "idx", index_type=index_type) as index:
        index.add_folder(demo_copy)
        query = index.searcher.random_id(seed=1)
        before = [m.id for m in index.search(query, k=5).matches]
    [damaged] = (tmp_path / "idx").glob(pattern)
    content = bytearray(damaged.read_bytes())
    if how == "truncate":
        damaged.write_bytes(content[: len(content) // 2])
    else:
        middle = len(content) // 2
        content[middle:middle + 64] = bytes(64)  # zeros where vector bytes were
        damaged.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="lookalike"), ImageIndex.open(tmp_path / "idx") as index:
        assert [m.id for m in index.search(query, k=5).matches] == before
    assert "damaged" in caplog.text and damaged.name in caplog.text


def test_index_written_by_a_newer_version_is_refused(tmp_path, demo_copy, capsys):
    with ImageIndex.create(tmp_path / "idx", index_type="hnsw") as index:
        index.add_folder(demo_copy)
    manifest = json.loads((tmp_path / "idx" / FILE).read_text())
    (tmp_path / "idx" / FILE).write_text(json.dumps(manifest | {"format_version": 99}))
    with pytest.raises(IndexFormatError, match="newer lookalike"):
        ImageIndex.open(tmp_path / "idx")
    assert main(["info", "--index", str(tmp_path / "idx")]) == 2
    assert "newer lookalike" in capsys.readouterr().err
