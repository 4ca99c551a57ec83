"""The capture data through the command line: `lookalike capture` reads it for an upgraded index, `search` filters
with --where taken.../camera=..., --near and orders with --sort (the flags generated from SearchOptions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from exif_photos import write_exif_photo

FORMAT_1 = Path(__file__).parent / "data" / "format-1"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "lookalike", *map(str, args)], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_capture_reads_an_upgraded_index_and_search_filters_and_sorts_by_it(tmp_path: Path):
    shutil.copytree(FORMAT_1 / "photos", tmp_path / "photos")
    shutil.copytree(FORMAT_1 / "index", tmp_path / "index")
    index = tmp_path / "index"
    report = json.loads(run("capture", "--index", index, "--json").stdout)
    assert (report["images"], report["from_file"]) == (12, 12)
    assert "capture read for 0 images" in run("capture", "--index", index).stdout  # nothing left
    shots = tmp_path / "shots"
    write_exif_photo(shots / "paris.jpg", 1, "2021:06:01 14:30:00", "Canon", "Canon EOS 5D", (48.8584, 2.2945))
    write_exif_photo(shots / "tokyo.jpg", 2, "2018:02:03 04:05:06", "FUJIFILM", "X-T3", (35.6586, 139.7454))
    run("add", shots / "paris.jpg", shots / "tokyo.jpg", "--index", index)
    query = write_exif_photo(tmp_path / "query.jpg", 3)  # not indexed: no match is left out as the query itself

    def found(*flags: str) -> list[dict]:
        return json.loads(run("search", query, "--index", index, "-k", "20", "--json", *flags).stdout)[
            "matches"]

    assert [Path(m["path"]).name for m in found("--where", "taken<2019")] == ["tokyo.jpg"]
    assert [Path(m["path"]).name for m in found("--where", "camera=canon eos 5d")] == ["paris.jpg"]
    assert [Path(m["path"]).name for m in found("--near", "35.68,139.76,10")] == ["tokyo.jpg"]
    newest = found("--sort=-taken")  # (argparse reads a separate -taken as a flag)
    assert [m["taken"] for m in newest] == sorted((m["taken"] for m in newest), reverse=True)
    assert newest[-1]["taken"] == "2018-02-03T04:05:06" and newest[-1]["taken_source"] == "exif"
    table = run("search", query, "--index", index, "--where", "taken<2019").stdout.splitlines()
    assert "taken" in table[-2] and "2018-02-03 04:05 exif" in table[-1] and table[-1].endswith("tokyo.jpg")
    refused = run("search", query, "--index", index, "--where", "taken>=last week", check=False)
    assert refused.returncode == 2 and "taken compares with a date" in refused.stderr
    refused = run("search", query, "--index", index, "--sort", "newest", check=False)
    assert refused.returncode == 2 and "taken" in refused.stderr
