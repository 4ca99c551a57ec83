"""End to end: the real command line on generated and real photos, including junk and crashes."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO_GALLERY, REPO, write_photo

from lookalike import ingest
from lookalike.cli import main
from lookalike.index import ImageIndex


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "lookalike", *map(str, args)], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def summary(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stdout)


def junk_folder(root: Path) -> Path:
    """Good photos mixed with every kind of bad file a real folder holds."""
    folder = root / "junk"
    for seed in range(4):
        write_photo(folder / f"good{seed}.jpg", seed)
    (folder / "empty.jpg").write_bytes(b"")
    good = (folder / "good0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "text.jpg").write_text("not a picture")
    (folder / "vector.png").write_text("<svg/>")
    (folder / "dot.png").write_bytes(b"")
    from PIL import Image

    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    Image.new("1", (12_000, 8_000)).save(folder / "bomb.png")
    (folder / "broken-link.jpg").symlink_to(folder / "nowhere.jpg")
    name = os.fsdecode(b"caf\xe9-latin1.png")  # not valid UTF-8
    write_photo(folder / name, seed=9)
    return folder


def test_index_reports_every_bad_file_and_keeps_the_good_ones(tmp_path):
    folder = junk_folder(tmp_path)
    report = summary(run("index", folder, "--index", tmp_path / "idx", "--json"))
    reasons = {Path(f["path"]).name: f["reason"] for f in report["failures"]}
    assert report["added"] == 5  # four good photos and the one with a non-UTF-8 name
    assert "empty" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "unsupported format" in reasons["vector.png"]
    assert "too small" in reasons["dot.png"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "broken symbolic link" in reasons["broken-link.jpg"]
    log = (tmp_path / "idx" / "failures.log").read_text()
    assert "truncated.jpg" in log and "bomb.png" in log


def test_file_with_non_utf8_name_can_be_searched_and_removed(tmp_path):
    folder = tmp_path / "photos"
    odd = folder / os.fsdecode(b"\xff\xfe-odd.png")
    write_photo(odd, seed=2)
    write_photo(folder / "plain.png", seed=3)
    run("index", folder, "--index", tmp_path / "idx")
    result = summary(run("search", odd, "--index", tmp_path / "idx", "--json", "-k", "1"))
    assert result["matches"][0]["path"].endswith("plain.png")
    assert summary(run("remove", odd, "--index", tmp_path / "idx", "--json"))["removed"] == 1


def test_reindex_after_modify_delete_and_rename(tmp_path, photo_folder):
    index = tmp_path / "idx"
    assert summary(run("index", photo_folder, "--index", index, "--json"))["added"] == 8
    write_photo(photo_folder / "set0" / "photo0.png", seed=77)  # modified
    (photo_folder / "set1" / "photo1.png").unlink()  # deleted
    (photo_folder / "set0" / "photo2.png").rename(photo_folder / "renamed.png")  # renamed
    report = summary(run("index", photo_folder, "--index", index, "--json"))
    assert (report["updated"], report["removed"], report["reused"], report["unchanged"]) == (1, 2, 1, 5)
    assert report["count"] == 7


def test_add_and_remove_single_files(tmp_path, photo_folder):
    index = tmp_path / "idx"
    run("index", photo_folder / "set0", "--index", index)
    extra = photo_folder / "set1" / "photo1.png"
    assert summary(run("add", extra, "--index", index, "--json"))["added"] == 1
    assert summary(run("remove", extra, "--index", index, "--json"))["removed"] == 1
    assert summary(run("info", "--index", index, "--json"))["count"] == 4


def test_search_prints_a_table_of_real_matches(tmp_path, demo_copy):
    run("index", demo_copy, "--index", tmp_path / "idx")
    shoe = sorted((demo_copy / "shoes").glob("*.jpg"))[0]
    query = tmp_path / "query.jpg"
    query.write_bytes(shoe.read_bytes())
    table = run("search", query, "--index", tmp_path / "idx", "-k", "3").stdout
    lines = [line for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 3
    assert shoe.name in lines[0] and float(lines[0].split()[1]) >= 0.999  # itself: the similarity, not the score
    assert lines[0].endswith("(same photo)") and "same photo" in table.splitlines()[1]  # and the note says so


def test_search_by_id_random_and_euclidean_json(tmp_path, demo_copy):
    run("index", demo_copy, "--index", tmp_path / "idx")
    by_id = summary(run("search", "--id", "3", "--index", tmp_path / "idx", "--json", "-k", "4"))
    assert len(by_id["matches"]) == 4 and all(m["id"] != 3 for m in by_id["matches"])
    randomly = summary(run("search", "--random", "--seed", "1", "--index", tmp_path / "idx", "--json",
                           "--method", "euclidean", "--min-score", "0.3"))
    assert randomly["method"] == "euclidean" and all(0.3 <= m["score"] <= 1 for m in randomly["matches"])
    again = summary(run("search", "--random", "--seed", "1", "--index", tmp_path / "idx", "--json", "--k", "2"))
    assert again["query_id"] == randomly["query_id"]  # the same seed, the same query


@pytest.mark.parametrize("content", [b"", b"plain text, no pixels"])
def test_bad_query_image_exits_2_without_a_traceback(tmp_path, photo_folder, content):
    run("index", photo_folder, "--index", tmp_path / "idx")
    (tmp_path / "bad.jpg").write_bytes(content)
    result = run("search", tmp_path / "bad.jpg", "--index", tmp_path / "idx", check=False)
    assert result.returncode == 2
    assert "lookalike: error:" in result.stderr and "Traceback" not in result.stderr


def test_missing_index_missing_query_and_two_queries_are_clear_errors(tmp_path, photo_folder, capsys):
    assert main(["search", "--random", "--index", str(tmp_path / "nothing")]) == 2
    assert "not a lookalike index" in capsys.readouterr().err
    ImageIndex.create(tmp_path / "idx").close()
    assert main(["search", str(tmp_path / "absent.jpg"), "--index", str(tmp_path / "idx")]) == 2
    assert "not found" in capsys.readouterr().err
    photo = photo_folder / "set0" / "photo0.png"
    assert main(["search", str(photo), "--id", "1", "--index", str(tmp_path / "idx")]) == 2
    assert "give exactly one query" in capsys.readouterr().err


def test_file_deleted_while_indexing_is_reported(tmp_path, photo_folder, monkeypatch):
    victim = photo_folder / "set1" / "photo5.png"
    original = ingest.prepare

    def delete_then_prepare(embedder, path, read=None):
        if path == victim:
            victim.unlink()
        return original(embedder, path, read)

    monkeypatch.setattr(ingest, "prepare", delete_then_prepare)
    with ImageIndex.create(tmp_path / "idx") as index:
        report = index.add_folder(photo_folder)
    assert report.added == 7
    assert [(f.path.name, "not found" in f.reason) for f in report.failures] == [("photo5.png", True)]


def test_killed_run_leaves_a_readable_index_and_resumes(tmp_path):
    folder = tmp_path / "many"
    for seed in range(900):
        write_photo(folder / f"p{seed:04d}.png", seed, size=(96, 96))
    index = tmp_path / "idx"
    child = subprocess.Popen([sys.executable, "-m", "lookalike", "index", str(folder), "--index", str(index),
                              "--pca", "16"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = _wait_for_first_commit(index / "images.sqlite", child)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 0 < committed < 900, "the run should be killed part-way"
    with ImageIndex.open(index) as reopened:
        survived = len(reopened)
        assert survived >= committed
        assert len(reopened.search(int(reopened.ids()[0]), k=5).matches) == 5
        assert reopened.reduction is None  # the PCA is fitted when a run finishes: this one never did
    report = summary(run("index", folder, "--index", index, "--json"))
    assert report["unchanged"] == survived and report["added"] == 900 - survived and report["count"] == 900
    assert "-> 16" in report["reduction"]  # the resumed run finishes, so the index gets its PCA after all


def _wait_for_first_commit(database: Path, child: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if database.exists():
            try:
                with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                    count = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            except sqlite3.OperationalError:
                count = 0
            if count:
                return count
        time.sleep(0.02)
    return 0


def test_demo_gallery_search_finds_same_type(tmp_path):
    """The README demo: the bundled real photos, searched by a shoe."""
    run("index", DEMO_GALLERY, "--index", tmp_path / "idx")
    shoe = sorted((DEMO_GALLERY / "shoes").glob("*.jpg"))[0]
    result = summary(run("search", shoe, "--index", tmp_path / "idx", "--json", "-k", "5"))
    assert sum("/shoes/" in m["path"] for m in result["matches"]) >= 4


# --- every search option, through the CLI, on the bundled demo gallery ------------------------------
def cli_json(capsys, *args: str) -> dict:
    assert main([*map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def demo_folder(demo_clone) -> str:
    """The demo gallery's index (144 photos, 12 types), closed so the CLI can open it."""
    folder = str(demo_clone.folder)
    demo_clone.close()
    return folder


def ids_under(folder: str, subfolder: str) -> list[int]:
    with ImageIndex.open(folder) as index:
        return sorted(r.id for r in index.records() if r.path.startswith(str(DEMO_GALLERY / subfolder) + os.sep))


def test_search_by_class_stays_within_the_predicted_classes(demo_folder, capsys):
    cli_json(capsys, "train-classifier", "--index", demo_folder, "--labels-csv", DEMO_GALLERY / "labels.csv")
    shoes = ids_under(demo_folder, "shoes")
    shoe = shoes[0]
    within = cli_json(capsys, "search", "--id", shoe, "--by-class", "-k", "50", "--index", demo_folder)
    assert list(within["predicted_class"]) == ["shoes"]
    assert len(within["matches"]) == len(shoes) - 1 and {m["labels"]["label"] for m in within["matches"]} == {"shoes"}
    two = cli_json(capsys, "search", "--id", shoe, "--by-class", "2", "--class-confidence", "1.0", "-k", "50",
                   "--index", demo_folder)
    assert len(two["predicted_class"]) == 2 and "shoes" in two["predicted_class"]
    assert {m["labels"]["label"] for m in two["matches"]} == set(two["predicted_class"])


def test_search_by_cluster_returns_the_other_members_of_the_query_cluster(demo_folder, tmp_path, capsys):
    assert main(["cluster", "--index", demo_folder, "--k", "6", "--out", str(tmp_path / "clusters")]) == 0
    capsys.readouterr()
    with ImageIndex.open(demo_folder) as index:
        clusters = index.label_values("cluster")
    query = min(clusters)
    members = sum(value == clusters[query] for value in clusters.values())
    found = cli_json(capsys, "search", "--id", query, "--by-cluster", "-k", "200", "--index", demo_folder)
    assert len(found["matches"]) == members - 1
    assert {m["labels"]["cluster"] for m in found["matches"]} == {clusters[query]}


def test_where_with_two_values_of_one_label_keeps_either(demo_folder, capsys):
    assert main(["labels", "import", str(DEMO_GALLERY / "labels.csv"), "--index", demo_folder]) == 0
    capsys.readouterr()
    found = cli_json(capsys, "search", "--id", ids_under(demo_folder, "dress")[0], "--where", "label=hat",
                     "--where", "label=shoes", "-k", "200", "--index", demo_folder)
    labels = [m["labels"]["label"] for m in found["matches"]]
    assert sorted(set(labels)) == ["hat", "shoes"]
    assert len(labels) == len(ids_under(demo_folder, "hat")) + len(ids_under(demo_folder, "shoes"))  # all of both


def test_path_prefix_keeps_only_images_under_the_folder(demo_folder, capsys):
    prefix = str(DEMO_GALLERY / "skirt") + os.sep
    found = cli_json(capsys, "search", "--id", ids_under(demo_folder, "dress")[0], "--path-prefix", prefix,
                     "-k", "200", "--index", demo_folder)
    assert sorted(m["id"] for m in found["matches"]) == ids_under(demo_folder, "skirt")  # every skirt, nothing else


def test_euclidean_ranks_like_cosine_with_distance_scores(demo_folder, capsys):
    query = ids_under(demo_folder, "hat")[0]
    cosine = cli_json(capsys, "search", "--id", query, "-k", "20", "--index", demo_folder)
    euclidean = cli_json(capsys, "search", "--id", query, "-k", "20", "--method", "euclidean", "--index", demo_folder)
    assert (cosine["method"], euclidean["method"]) == ("cosine", "euclidean")
    assert [m["id"] for m in euclidean["matches"]] == [m["id"] for m in cosine["matches"]]
    expected = [1 / (1 + math.sqrt(max(0.0, 2 - 2 * m["score"]))) for m in cosine["matches"]]
    assert [m["score"] for m in euclidean["matches"]] == pytest.approx(expected, abs=1e-4)
    assert [m["score"] for m in euclidean["matches"]] != pytest.approx([m["score"] for m in cosine["matches"]])
