"""Near-duplicate groups on real photos with known edits, and the copy to keep."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.index import ImageIndex
from lookalike.organise.duplicates import EDITS, find_duplicates, make_edited_copy, pair_precision_recall, similar_pairs


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
        groups = find_duplicates(index)
    precision, recall, found, true = pair_precision_recall([g.paths for g in groups], pairs)
    assert (precision, recall, found, true) == (1.0, 1.0, 7, 7)


def test_recommended_copy_is_the_largest_resolution_then_the_largest_file(edited_set):
    folder, _ = edited_set
    with ImageIndex.open(folder / "index") as index:
        groups = {g.keep: g for g in find_duplicates(index)}
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
    groups = json.loads(capsys.readouterr().out)
    assert len(groups) == 7 and all(g["keep"] in g["paths"] and len(g["paths"]) == 2 for g in groups)
    assert main(["duplicates", "--index", str(folder / "index"), "--threshold", "0.999",
                 "--verify-from", "none"]) == 0
    out = capsys.readouterr().out
    assert "1 groups; 1 images could go" in out and "-copy.jpg" in out  # only the byte-identical copy


def test_pair_precision_recall_counts_pairs_within_groups():
    groups = [["a", "b", "c"], ["d", "e"]]
    precision, recall, found, true = pair_precision_recall(groups, [("a", "b"), ("d", "e"), ("f", "g")])
    assert (found, true) == (4, 3) and precision == 0.5 and recall == pytest.approx(2 / 3)


def test_pixel_check_tells_a_cropped_copy_from_another_photo(edited_set):
    from lookalike.organise.duplicates import pixel_correlation

    folder, pairs = edited_set
    cropped = next(pair for pair in pairs if pair[1].endswith("-crop10.jpg"))
    other = str(folder / "photos" / "20.jpg")
    assert pixel_correlation(*cropped) > 0.95
    assert pixel_correlation(cropped[0], other) < 0.8
    assert pixel_correlation(cropped[0], str(folder / "missing.jpg")) == -1.0
