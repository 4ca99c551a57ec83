"""Labels import from CSV, and search filtered by label and path prefix inside the index search."""

from __future__ import annotations

import json

from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.organise.labels import import_labels, labelled_ids

LABELS = DEMO_GALLERY / "labels.csv"


def test_demo_labels_import_labels_every_image(demo_clone):
    report = import_labels(demo_clone, LABELS)
    assert (report.images, len(report.unknown), report.empty) == (144, 0, 0)
    assert demo_clone.label_values("label")[demo_clone.ids()[0].item()] == "dress"
    assert demo_clone.label_counts()["label"]["hat"] == 12


def test_unknown_images_and_empty_labels_are_skipped_and_counted(demo_clone, tmp_path):
    dress = sorted((DEMO_GALLERY / "dress").glob("*.jpg"))
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(f"path,label\n{dress[0]},dress\n{dress[1]},\nmissing/photo.jpg,hat\n{dress[2]},  \n")
    report = import_labels(demo_clone, csv_file)
    assert (report.images, len(report.unknown), report.empty) == (1, 1, 2)
    assert report.unknown == [str(tmp_path / "missing" / "photo.jpg")]
    assert "skipped 1 rows naming images not in the index and 2 empty labels" in report.summary()
    assert demo_clone.label_values("label") == {demo_clone.record_by_path(dress[0]).id: "dress"}


def test_labelled_ids_reads_the_csv_without_writing_labels(demo_clone):
    found, report = labelled_ids(demo_clone, LABELS)
    assert len(found) == 144 and report.images == 144 and set(found.values()) >= {"dress", "hat"}
    assert demo_clone.label_values("label") == {}


def test_where_filter_returns_k_results_of_that_label_when_k_exist(demo_clone):
    import_labels(demo_clone, LABELS)
    query = demo_clone.ids()[0].item()  # a dress
    plain = demo_clone.search(query, k=14)
    assert {m.labels["label"] for m in plain.matches} != {"hat"}
    hats = demo_clone.search(query, k=14, where={"label": "hat"})
    assert len(hats.matches) == 12  # all 12 hats, though none is among the plain top 14 for most dresses
    assert {m.labels["label"] for m in hats.matches} == {"hat"}


def test_a_label_name_given_twice_in_where_terms_means_either_value(demo_clone):
    import_labels(demo_clone, LABELS)
    query = demo_clone.ids()[0].item()
    either = demo_clone.search(query, k=30, where=["label=hat", "label=skirt"])
    assert len(either.matches) == 24 and {m.labels["label"] for m in either.matches} == {"hat", "skirt"}
    assert demo_clone.search(query, k=30, where={"label": ["hat", "skirt"]}).matches == either.matches


def test_path_prefix_and_unknown_value_filters(demo_clone):
    import_labels(demo_clone, LABELS)
    shoes = demo_clone.search(demo_clone.ids()[0].item(), k=5, path_prefix=str(DEMO_GALLERY / "shoes"))
    assert len(shoes.matches) == 5 and all("/shoes/" in m.path for m in shoes.matches)
    assert demo_clone.search(1, k=5, where={"label": "sofa"}).matches == []


def test_cli_bad_where_term_is_a_clear_error(capsys, demo_clone):
    assert main(["search", "--id", "1", "--where", "chair", "--index", str(demo_clone.folder)]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_cli_labels_import_then_filtered_search(capsys, demo_clone, tmp_path):
    folder = str(demo_clone.folder)
    demo_clone.close()
    assert main(["labels", "import", str(LABELS), "--index", folder]) == 0
    assert "labelled 144 images" in capsys.readouterr().out
    assert main(["search", "--id", "1", "-k", "3", "--where", "label=shoes", "--json", "--index", folder]) == 0
    matches = json.loads(capsys.readouterr().out)["matches"]
    assert len(matches) == 3 and all(m["labels"]["label"] == "shoes" for m in matches)
    missing = tmp_path / "nope.csv"
    assert main(["labels", "import", str(missing), "--index", folder]) == 2
    assert "labels file not found" in capsys.readouterr().err
