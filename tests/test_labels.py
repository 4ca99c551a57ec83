"""Labels import from CSV, and search filtered by label and path prefix inside the index search."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.index import ImageIndex, UnknownLabelError
from lookalike.organise.classifier import train_classifier
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


def test_path_prefix_keeps_images_under_that_folder(demo_clone):
    import_labels(demo_clone, LABELS)
    shoes = demo_clone.search(demo_clone.ids()[0].item(), k=5, path_prefix=str(DEMO_GALLERY / "shoes"))
    assert len(shoes.matches) == 5 and all("/shoes/" in m.path for m in shoes.matches)


def test_where_ignores_the_case_of_label_names_and_values(demo_clone):
    import_labels(demo_clone, LABELS)
    query = demo_clone.ids()[0].item()
    hats = demo_clone.search(query, k=30, where={"label": "hat"}).matches
    assert len(hats) == 12
    assert demo_clone.search(query, k=30, where={"LABEL": "HAT"}).matches == hats
    either = demo_clone.search(query, k=30, where=["Label=Hat", "label=SKIRT"]).matches
    assert len(either) == 24 and {m.labels["label"] for m in either} == {"hat", "skirt"}
    dresses = demo_clone.ids_matching({"label": "dress"}).tolist()
    assert len(dresses) > 0 and demo_clone.ids_matching({"label": "Dress"}).tolist() == dresses


def test_where_matches_every_stored_spelling_of_a_value(demo_clone):
    import_labels(demo_clone, LABELS)
    hats = sorted(demo_clone.ids_matching({"label": "hat"}).tolist())
    demo_clone.set_labels({hats[0]: {"label": "Hat"}})  # one image labelled in another case
    assert sorted(demo_clone.ids_matching({"label": "HAT"}).tolist()) == hats


def test_an_unknown_label_value_is_refused_naming_the_values(demo_clone):
    import_labels(demo_clone, LABELS)
    for asked in ("sofa", "dres"):
        with pytest.raises(UnknownLabelError) as refused:
            demo_clone.search(1, k=5, where={"label": asked})
        assert refused.value.unknown == (asked,) and {"dress", "hat", "shoes"} <= set(refused.value.known)
        assert f"label={asked}" in str(refused.value) and "dress, hat" in str(refused.value)
    with pytest.raises(UnknownLabelError, match="dress"):
        demo_clone.ids_matching({"label": ["hat", "gown"]})


def test_an_unknown_label_name_is_refused_naming_the_names(demo_clone):
    with pytest.raises(UnknownLabelError, match="no labels"):
        demo_clone.search(1, where={"label": "dress"})  # nothing is labelled yet
    import_labels(demo_clone, LABELS)
    with pytest.raises(UnknownLabelError, match="'colour'.*: label$") as refused:
        demo_clone.search(1, where={"colour": "red"})
    assert refused.value.known == ("label",) and isinstance(refused.value, ValueError)


def test_where_in_another_case_narrows_a_class_scope(demo_clone):
    train_classifier(demo_clone, LABELS)
    shoe = sorted(demo_clone.ids_matching({"label": "shoes"}).tolist())[0]
    found = demo_clone.search(shoe, k=5, by_class=1, where={"label": "SHOES"})
    assert len(found.matches) == 5 and {m.labels["label"] for m in found.matches} == {"shoes"}
    assert demo_clone.search(shoe, k=5, by_class=1, where={"label": "HAT"}).matches == []  # no class both allow


def test_indexing_a_folder_reads_its_labels_csv(demo_copy, tmp_path):
    photos = sorted(demo_copy.rglob("*.jpg"))
    rows = [f"{p.relative_to(demo_copy)},{p.parent.name},{'test' if n % 3 == 0 else 'train'}"
            for n, p in enumerate(photos)]
    (demo_copy / "labels.csv").write_text("path,label,split\n" + "\n".join(rows) + "\nnot/here.jpg,hat,test\n")
    with ImageIndex.create(tmp_path / "index") as index:
        report = index.add_folder(demo_copy)
        labels = report.labels
        assert (labels.images, labels.attributes, len(labels.unknown)) == (len(photos), ["label", "split"], 1)
        assert report.to_dict()["labels"]["images"] == len(photos)
        dresses = index.search(index.ids()[-1].item(), k=10, where={"label": "dress"}).matches
        assert len(dresses) == 3 and all(m.labels["label"] == "dress" for m in dresses)
        assert index.label_counts()["split"] == {"test": len(rows[::3]), "train": len(photos) - len(rows[::3])}


def test_a_folder_without_labels_csv_reports_none_and_a_bad_one_says_why(photo_folder, tmp_path):
    with ImageIndex.create(tmp_path / "index") as index:
        assert index.add_folder(photo_folder).labels is None
        (photo_folder / "labels.csv").write_text("file,label\nset0/photo0.png,x\n")
        report = index.add_folder(photo_folder)
        assert report.added == 0 and "'path' column" in report.labels.problem
        assert index.label_counts() == {}


def test_cli_index_says_it_read_labels_csv_and_where_works(demo_copy, tmp_path, capsys):
    photos = sorted(demo_copy.rglob("*.jpg"))
    rows = [f"{p.relative_to(demo_copy)},{p.parent.name}" for p in photos]
    (demo_copy / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    folder = str(tmp_path / "index")
    assert main(["index", str(demo_copy), "--index", folder]) == 0
    assert f"labels: {len(photos)} images from {demo_copy / 'labels.csv'} (label)" in capsys.readouterr().out
    assert main(["search", "--id", "1", "-k", "5", "--where", "label=Shoes", "--json", "--index", folder]) == 0
    matches = json.loads(capsys.readouterr().out)["matches"]
    assert len(matches) == 3 and {m["labels"]["label"] for m in matches} == {"shoes"}


def test_cli_unknown_label_value_exits_2_naming_the_values(capsys, demo_clone):
    import_labels(demo_clone, LABELS)
    folder = str(demo_clone.folder)
    demo_clone.close()
    assert main(["search", "--id", "1", "--where", "label=dres", "--index", folder]) == 2
    error = capsys.readouterr().err
    assert "no image has label=dres" in error and "dress, hat" in error


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
