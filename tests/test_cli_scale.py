"""The index-type options of `lookalike index` and the compact verb, through the real CLI."""

from __future__ import annotations

import lookalike.cli.core as core
from lookalike.cli import main
from lookalike.index.folder import IndexFolder
from lookalike.index.manifest import read_manifest


def test_index_type_is_recorded_for_a_new_index_and_kept_by_an_existing_one(tmp_path, demo_copy, capsys):
    assert main(["index", str(demo_copy), "--index", str(tmp_path / "idx"), "--index-type", "hnsw"]) == 0
    assert read_manifest(tmp_path / "idx").index_type == "hnsw"
    assert "index type: hnsw" in capsys.readouterr().out
    assert main(["index", str(demo_copy), "--index", str(tmp_path / "idx"), "--index-type", "ivfpq"]) == 0
    printed = capsys.readouterr()
    assert "already holds a hnsw index; --index-type only applies to new index folders" in printed.err
    assert "index type:" not in printed.out and read_manifest(tmp_path / "idx").index_type == "hnsw"


def test_photos_are_counted_only_for_index_type_auto(tmp_path, demo_copy, monkeypatch):
    counted = []
    monkeypatch.setattr(core, "count_photos", lambda folder: counted.append(folder) or 30)
    assert main(["index", str(demo_copy), "--index", str(tmp_path / "exact")]) == 0
    assert counted == []
    assert main(["index", str(demo_copy), "--index", str(tmp_path / "auto"), "--index-type", "auto"]) == 0
    assert counted == [str(demo_copy)]


def test_auto_explains_its_choice(tmp_path, demo_copy, capsys):
    assert main(["index", str(demo_copy), "--index", str(tmp_path / "idx"), "--index-type", "auto",
                 "--max-memory", "1G"]) == 0
    out = capsys.readouterr().out
    assert "index type: flat-ip" in out and "exact search over" in out


def test_memory_budget_too_small_is_a_usage_error(tmp_path, demo_copy, capsys):
    code = main(["index", str(demo_copy), "--index", str(tmp_path / "idx"), "--index-type", "auto",
                 "--max-memory", "1K"])
    assert code == 2
    assert "too small for any index type" in capsys.readouterr().err
    assert not IndexFolder(tmp_path / "idx").is_index()


def test_compact_after_removal_keeps_search_working(tmp_path, demo_copy, capsys):
    assert main(["index", str(demo_copy), "--index", str(tmp_path / "idx"), "--index-type", "hnsw"]) == 0
    first = sorted(demo_copy.rglob("*.jpg"))[0]
    assert main(["remove", str(first), "--index", str(tmp_path / "idx")]) == 0
    assert main(["compact", "--index", str(tmp_path / "idx")]) == 0
    assert "compacted" in capsys.readouterr().out
    assert main(["search", "--random", "--seed", "1", "--index", str(tmp_path / "idx"), "--json"]) == 0
    assert str(first) not in capsys.readouterr().out
