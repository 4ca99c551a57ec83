"""Duplicates a user can delete by: copies of real photos with known edits found, the copy to keep, and
different photos that look alike (jeans on one wall) never offered for deletion nor chained together."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.copy_check import check_copy
from lookalike.index import ImageIndex
from lookalike.organise.duplicates import (
    EDITS,
    anchored_groups,
    find_duplicates,
    make_edited_copy,
    pair_precision_recall,
    similar_pairs,
)

LOOK_ALIKES = Path(__file__).resolve().parent / "data" / "look-alikes"


@pytest.fixture(scope="module")
def edited_set(tmp_path_factory):
    """7 demo photos each with one edited copy (every kind of edit once) plus 14 other demo photos."""
    folder = tmp_path_factory.mktemp("duplicates")
    photos = [p for kind in sorted(DEMO_GALLERY.iterdir()) if kind.is_dir() for p in sorted(kind.glob("*.jpg"))[:3]]
    pairs = []
    for n, source in enumerate(photos[:7] + photos[10:24]):
        original = make_edited_copy(source, folder / "photos" / f"{n:02d}.jpg", "copy")
        if n < 7:
            edit = list(EDITS)[n]
            pairs.append((str(original), str(make_edited_copy(source, folder / "photos" / f"{n:02d}-{edit}.jpg",
                                                              edit))))
    with ImageIndex.create(folder / "index") as index:
        index.add_folder(folder / "photos")
    return folder, pairs


def test_every_edited_copy_is_found_and_nothing_else(edited_set):
    folder, pairs = edited_set
    with ImageIndex.open(folder / "index") as index:
        assert len(index) == 28
        groups = find_duplicates(index).groups
    precision, recall, found, true = pair_precision_recall([g.paths for g in groups], pairs)
    assert (precision, recall, found, true) == (1.0, 1.0, 7, 7)


def test_recommended_copy_is_the_largest_resolution_then_the_largest_file(edited_set):
    folder, _ = edited_set
    with ImageIndex.open(folder / "index") as index:
        groups = {g.keep: g for g in find_duplicates(index).groups}
    resized = next(g for g in groups.values() if any(p.endswith("-resize50.jpg") for p in g.paths))
    assert not resized.keep.endswith("-resize50.jpg")  # the full-size original
    recompressed = next(g for g in groups.values() if any(p.endswith("-jpeg30.jpg") for p in g.paths))
    assert not recompressed.keep.endswith("-jpeg30.jpg")  # same size: the bigger file


def test_threshold_outside_cosine_range_is_refused(edited_set, capsys):
    with pytest.raises(ValueError, match="between -1 and 1"):
        similar_pairs(pytest.importorskip("numpy").eye(3, dtype="float32"), 1.5)
    folder, _ = edited_set
    assert main(["duplicates", "--index", str(folder / "index"), "--threshold", "2"]) == 2
    assert "between -1 and 1" in capsys.readouterr().err


def test_cli_duplicates_json_lists_groups_with_keep(edited_set, capsys):
    folder, pairs = edited_set
    assert main(["duplicates", "--index", str(folder / "index"), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    groups = found["groups"]
    assert len(groups) == 7 and all(g["keep"] in g["paths"] and len(g["paths"]) == 2 for g in groups)
    assert all(g["could_go"] == [p for p in g["paths"] if p != g["keep"]] for g in groups)
    assert found["could_go"] == 7
    assert main(["duplicates", "--index", str(folder / "index")]) == 0
    assert "7 groups of copies; 7 images could go" in capsys.readouterr().out


def test_pair_precision_recall_counts_pairs_within_groups():
    groups = [["a", "b", "c"], ["d", "e"]]
    precision, recall, found, true = pair_precision_recall(groups, [("a", "b"), ("d", "e"), ("f", "g")])
    assert (found, true) == (4, 3) and precision == 0.5 and recall == pytest.approx(2 / 3)


def test_copy_check_tells_a_cropped_copy_from_another_photo(edited_set):
    folder, pairs = edited_set
    cropped = next(pair for pair in pairs if pair[1].endswith("-crop10.jpg"))
    assert check_copy(*cropped).is_copy()
    assert not check_copy(cropped[0], str(folder / "photos" / "20.jpg")).is_copy()
    missing = check_copy(cropped[0], str(folder / "missing.jpg"))
    assert (missing.inliers, missing.agreement) == (0, -1.0) and not missing.is_copy()


def test_a_photo_with_one_part_changed_is_no_copy(tmp_path):
    """Like two frames of one scene: the photos align and agree overall, but one region differs."""
    from PIL import Image

    from lookalike.copy_check import MAX_CELL_DIFFERENCE

    with Image.open(sorted((DEMO_GALLERY / "dress").glob("*.jpg"))[0]) as image:
        photo = image.convert("RGB")
    with Image.open(sorted((DEMO_GALLERY / "pants").glob("*.jpg"))[0]) as image:
        other = image.convert("RGB").resize(photo.size)
    photo.save(tmp_path / "photo.jpg", quality=95)
    box = (photo.width // 4, photo.height // 4, photo.width // 2, photo.height // 2)
    photo.paste(other.crop(box), box)  # one sixteenth of the photo replaced
    photo.save(tmp_path / "changed.jpg", quality=95)
    check = check_copy(str(tmp_path / "photo.jpg"), str(tmp_path / "changed.jpg"))
    assert check.inliers >= 100 and check.agreement > 0.85
    assert check.worst_cell > MAX_CELL_DIFFERENCE and not check.is_copy()


@pytest.fixture(scope="module")
def jeans_on_one_wall(tmp_path_factory):
    """Three different pairs of jeans photographed on one wall (CNN cosine 0.94) and a 5%-cropped copy of one."""
    folder = tmp_path_factory.mktemp("look-alikes")
    for photo in sorted(LOOK_ALIKES.glob("*.jpg")):
        shutil.copy(photo, folder / photo.name)
    make_edited_copy(LOOK_ALIKES / "jeans-b.jpg", folder / "jeans-b-crop5.jpg", "crop5")
    with ImageIndex.create(folder / "index") as index:
        index.add_folder(folder)
    return folder


def test_different_jeans_that_look_alike_are_no_copies_and_cannot_go(jeans_on_one_wall):
    with ImageIndex.open(jeans_on_one_wall / "index") as index:
        found = find_duplicates(index)
    names = [sorted(Path(p).name for p in group.paths) for group in found.groups]
    assert names == [["jeans-b-crop5.jpg", "jeans-b.jpg"]]
    assert found.could_go == 1 and Path(found.groups[0].keep).name == "jeans-b.jpg"
    alike = {Path(p).name for group in found.look_alikes for p in group.paths}
    assert {"jeans-a.jpg", "jeans-c.jpg"} <= alike  # shown as look-alikes, never as deletable


def test_every_copy_is_checked_against_the_kept_photo_not_chained(jeans_on_one_wall):
    with ImageIndex.open(jeans_on_one_wall / "index") as index:
        # every candidate passes this check: a~b and b~c are candidates at cosine >= 0.92, a~c (0.90) is not
        found = find_duplicates(index, threshold=0.92, min_inliers=0, min_agreement=-1.0)
        assert found.groups and all(not {"jeans-a.jpg", "jeans-c.jpg"} <= {Path(p).name for p in group.paths}
                                    for group in found.groups)
        for group in find_duplicates(index).groups:
            assert all(check_copy(group.keep, path).is_copy() for path in group.could_go)


def test_anchored_groups_take_only_direct_neighbours_of_the_anchor():
    chain = {0: {1: 0.9}, 1: {0: 0.9, 2: 0.9}, 2: {1: 0.9}}
    assert anchored_groups([0, 1, 2], chain) == [(0, [1])]  # 2 is no neighbour of 0, and 1 is placed
    assert anchored_groups([1, 0, 2], chain) == [(1, [0, 2])]
    assert anchored_groups([2, 0, 1], chain) == [(2, [1])]
