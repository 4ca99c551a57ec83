"""Several examples with signs (lookalike.index.examples): positives averaged, negatives taken away (Rocchio), every
example's id left out of the results; through the Python API, the CLI (several images, --not, --id, --not-id) and
HTTP (several image uploads, not_image, several id, not_id), on the real demo gallery."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY, REPO

from lookalike.errors import RequestError
from lookalike.index import ImageIndex
from lookalike.index.examples import rocchio


def photos(label: str, *numbers: int) -> list[str]:
    files = sorted((DEMO_GALLERY / label).glob("*.jpg"))
    return [str(files[number]) for number in numbers]


def classes(result) -> list[str]:
    return [Path(match.path).parent.name for match in result.matches]


@pytest.mark.parametrize("label", ["shirt", "longsleeve"])
def test_several_examples_find_more_of_their_common_class_than_each_alone(demo_index: ImageIndex, label: str):
    examples = photos(label, 0, 1, 2)
    alone = [classes(demo_index.search(example, k=10)).count(label) for example in examples]
    together = classes(demo_index.search(examples, k=10)).count(label)
    assert together > np.mean(alone), (alone, together)


def test_a_negative_example_pushes_its_class_down(demo_index: ImageIndex):
    query, unlike = photos("skirt", 0)[0], photos("dress", 1)[0]
    before = Counter(classes(demo_index.search(query, k=10)))
    after = Counter(classes(demo_index.search(query, negative=[unlike], k=10)))
    assert after["dress"] < before["dress"] and after["skirt"] >= before["skirt"], (before, after)


def test_every_examples_id_is_left_out_of_the_results(demo_index: ImageIndex):
    first = demo_index.search(photos("shoes", 0)[0], k=4).matches
    ids = [match.id for match in first]
    result = demo_index.search(id=ids[:2], not_id=ids[2:3], k=20)
    assert not {*ids[:3]} & {match.id for match in result.matches}
    assert result.query_id == ids[0] and result.query.count(" + ") == 1 and result.query.count(" - ") == 1


def test_more_id_adds_indexed_examples_to_any_query(demo_index: ImageIndex):
    shoe = photos("shoes", 0)[0]
    ids = [match.id for match in demo_index.search(shoe, k=3).matches]
    result = demo_index.search(shoe, more_id=ids[1:], k=10)
    assert result.query.count(" + ") == 2 and not set(ids[1:]) & {match.id for match in result.matches}
    assert result.query_id == demo_index.record_by_path(shoe).id  # the photo given first names the query


def test_examples_mix_files_bytes_and_ids(demo_index: ImageIndex):
    shoe, other = photos("shoes", 0, 1)
    indexed = demo_index.record_by_path(other).id
    result = demo_index.search([shoe, Path(other).read_bytes(), indexed], k=5)
    assert classes(result) == ["shoes"] * 5


def test_rocchio_is_the_unit_mean_of_positives_less_beta_times_the_negatives_mean():
    a, b, c = np.eye(3, dtype=np.float32)
    combined = rocchio([2 * a, b], [c], 0.5)
    expected = (a + b) / np.sqrt(2) - 0.5 * c
    assert np.allclose(combined, expected / np.linalg.norm(expected))
    with pytest.raises(RequestError, match="cancel out"):
        rocchio([a], [a], 1.0)


@pytest.mark.parametrize("asked", [{"negative": [3.5]}, {"negative": [True]}, {"not_text": ["  "]},
                                   {"negative_weight": 3}, {"negative_weight": "x"}])
def test_bad_examples_are_request_errors(demo_index: ImageIndex, asked):
    with pytest.raises(RequestError):
        demo_index.search(photos("shoes", 0)[0], **asked)


def test_words_to_be_unlike_need_a_model_that_reads_words(demo_index: ImageIndex):
    from lookalike.embedders.spec import NoTextTowerError

    with pytest.raises(NoTextTowerError):
        demo_index.search(photos("shoes", 0)[0], not_text=["red"])


def test_no_example_at_all_is_a_request_error(demo_index: ImageIndex):
    with pytest.raises(RequestError, match="at least one example"):
        demo_index.search([])


def test_the_cli_takes_several_images_and_negatives(demo_index: ImageIndex):
    skirt, dress = photos("skirt", 0)[0], photos("dress", 1)[0]
    result = subprocess.run([sys.executable, "-m", "lookalike", "search", *photos("skirt", 0, 1), "--not", dress,
                             "--index", str(demo_index.folder), "-k", "10", "--json"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["query"].count(" + ") == 1 and answer["query"].endswith(f" - {dress}")
    assert skirt not in [m["path"] for m in answer["matches"]]
    ids = [m["id"] for m in answer["matches"]][:3]
    by_ids = subprocess.run([sys.executable, "-m", "lookalike", "search", "--id", str(ids[0]), "--id", str(ids[1]),
                             "--not-id", str(ids[2]), "--index", str(demo_index.folder), "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert by_ids.returncode == 0, by_ids.stderr
    assert not set(ids) & {m["id"] for m in json.loads(by_ids.stdout)["matches"]}


def test_http_takes_several_uploads_ids_and_negatives(demo_index: ImageIndex):
    from fastapi.testclient import TestClient

    from lookalike.web import ServerSettings, create_app

    skirts, dress = photos("skirt", 0, 1), photos("dress", 1)[0]
    with TestClient(create_app([demo_index.folder], ServerSettings())) as client:
        url = f"/api/indexes/{demo_index.folder.name}/search"
        files = [("image", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in skirts]
        files.append(("not_image", ("dress.jpg", Path(dress).read_bytes(), "image/jpeg")))
        answer = client.post(url, files=files, data={"k": "10"})
        assert answer.status_code == 200, answer.json()
        assert answer.json()["query"] == "<uploaded image> + <uploaded image> - <uploaded image>"
        ids = [m["id"] for m in answer.json()["matches"]][:3]
        by_ids = client.get(url, params=[("id", ids[0]), ("id", ids[1]), ("not_id", ids[2])])
        assert by_ids.status_code == 200, by_ids.json()
        assert not set(ids) & {m["id"] for m in by_ids.json()["matches"]}
        liked = client.post(url, files=files[:1], data={"more_id": [str(ids[0])], "not_id": [str(ids[2])]})
        assert liked.status_code == 200, liked.json()
        assert liked.json()["query"] == f"<uploaded image> + {by_ids.json()['query'].split(' + ')[0]} - " \
            + by_ids.json()["query"].split(" - ")[-1]
        assert not {ids[0], ids[2]} & {m["id"] for m in liked.json()["matches"]}
        too_many = client.get(url, params=[("id", ids[0])] * 21)
        assert too_many.status_code == 422 and "at most 20" in too_many.json()["detail"]
