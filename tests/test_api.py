"""The HTTP API in process (FastAPI's TestClient) over real demo photos: every endpoint, its errors and limits."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import DEMO_GALLERY, wait_for_job, write_photo
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.expansion import EXPANSIONS, EXPLANATIONS
from lookalike.index import ImageIndex, NewImage
from lookalike.index.folder import IndexFolder
from lookalike.index.plan import IndexPlan
from lookalike.organise.classifier import train_classifier
from lookalike.organise.clustering import cluster_index
from lookalike.search import option_names
from lookalike.web import ServerSettings, create_app
from lookalike.web.indexes_api import NewIndex
from lookalike.web.logs import JsonFormatter
from lookalike.web.search_api import SearchFields

PER_LABEL = 2
LABELS = sorted(p.name for p in DEMO_GALLERY.iterdir() if p.is_dir())
COUNT = PER_LABEL * len(LABELS)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real photos of each clothing type from the demo gallery."""
    folder = tmp_path_factory.mktemp("api-gallery")
    for label_folder in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir()):
        for photo in sorted(label_folder.glob("*.jpg"))[:PER_LABEL]:
            (folder / label_folder.name).mkdir(exist_ok=True)
            shutil.copy(photo, folder / label_folder.name / photo.name)
    return folder


@pytest.fixture(scope="module")
def gallery_index(gallery: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the gallery, each image labelled with its folder, searched (never changed) by the read-only tests."""
    folder = tmp_path_factory.mktemp("api-index") / "clothes"
    with ImageIndex.create(folder) as index:
        index.add_folder(gallery)
        index.set_labels({record.id: {"label": Path(record.path).parent.name} for record in index.records()})
    return folder


@pytest.fixture(scope="module")
def organised_index(demo_index: ImageIndex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole demo gallery (vectors copied, not embedded again) with a classifier and 10 clusters."""
    folder = tmp_path_factory.mktemp("api-organised") / "demo"
    ids, vectors = demo_index.vectors()
    records = [demo_index.record(int(i)) for i in ids]
    with ImageIndex.create(folder) as index:
        run = index.sync()
        run.store_images([NewImage(r.path, r.content_hash, r.size, r.mtime, r.width, r.height) for r in records],
                         vectors)
        run.finish()
        train_classifier(index, DEMO_GALLERY / "labels.csv")
        cluster_index(index, k=10, sheets=False)
    return folder


@pytest.fixture
def empty_index(tmp_path: Path) -> Path:
    folder = tmp_path / "fresh"
    ImageIndex.create(folder).close()
    return folder


def client_for(*folders: Path, **settings: object) -> TestClient:
    return TestClient(create_app(list(folders), ServerSettings(**settings)))


@pytest.fixture
def client(gallery_index: Path) -> Iterator[TestClient]:
    with client_for(gallery_index) as test_client:
        yield test_client


def photo_bytes(label: str = "dress", number: int = 0) -> bytes:
    return sorted((DEMO_GALLERY / label).glob("*.jpg"))[number].read_bytes()


def png_bytes(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def upload(client: TestClient, data: bytes, name: str = "query.jpg", index: str = "clothes", **form: object):
    fields = {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in form.items()}
    return client.post(f"/api/indexes/{index}/search", files={"image": (name, data, "image/jpeg")}, data=fields)


def search_get(client: TestClient, index: str = "clothes", **params: object) -> dict:
    response = client.get(f"/api/indexes/{index}/search", params=params)
    assert response.status_code == 200, response.json()
    return response.json()


def ids_labelled(client: TestClient, index: str = "clothes") -> dict[str, list[int]]:
    """Image ids by their `label`, as the images endpoint lists them."""
    found: dict[str, list[int]] = {}
    for image in client.get(f"/api/indexes/{index}/images", params={"limit": 1000}).json()["images"]:
        found.setdefault(image["labels"]["label"], []).append(image["id"])
    return found


# --- service ---------------------------------------------------------------------------------
def test_health_and_ready_report_the_served_indexes(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["indexes"] == {"clothes": COUNT}


def test_page_script_and_openapi_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="results"' in page.text and "/static/app.js" in page.text
    assert "search(" in client.get("/static/app.js").text
    assert client.get("/maps").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/indexes/{name}/search" in paths and "/api/jobs/{job_id}" in paths
    assert client.get("/docs").status_code == 200


def test_every_response_carries_a_request_id_and_a_client_id_is_echoed(client: TestClient) -> None:
    assert len(client.get("/health").headers["x-request-id"]) >= 8
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/health", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"


def test_error_bodies_say_what_is_wrong_and_carry_the_request_id(client: TestClient) -> None:
    response = client.get("/api/indexes/clothes/search", params={"id": 1, "k": 0})
    body = response.json()
    assert response.status_code == 422 and body["detail"].startswith("invalid request: k:")
    assert body["request_id"] == response.headers["x-request-id"]


def test_request_log_lines_are_json_with_the_request_id(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lookalike.web"):
        client.get("/api/indexes/clothes", headers={"X-Request-ID": "trace-me"})
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == "request"]
    assert any(line["request_id"] == "trace-me" and line["status"] == 200 and line["path"] == "/api/indexes/clothes"
               and isinstance(line["ms"], float) for line in lines)


# --- indexes -----------------------------------------------------------------------------------
def test_list_and_inspect_indexes(client: TestClient) -> None:
    [listed] = client.get("/api/indexes").json()
    assert listed["name"] == "clothes" and listed["count"] == COUNT
    info = client.get("/api/indexes/clothes").json()
    assert info["model"] == "efficientnet-lite0" and info["dimension"] == 1280 and info["disk_bytes"] > 0
    assert client.get("/api/indexes/nope").status_code == 404


def test_capabilities_list_methods_scopes_and_label_counts(client: TestClient, organised_index: Path) -> None:
    plain = client.get("/api/indexes/clothes").json()["capabilities"]
    assert "low_confidence" not in plain  # judged per search now: every answer carries low_confidence and note
    assert plain == {"methods": ["cosine", "euclidean"], "scopes": {"by_class": False, "by_cluster": False},
                     "filters": True, "labels": {"label": {label: PER_LABEL for label in LABELS}},
                     "text_search": False, "expansions": {name: EXPLANATIONS[name] for name in EXPANSIONS},
                     "expand": "aqe", "augmentation": "DBA over 10 neighbours (alpha 2)"}
    with client_for(organised_index) as organised:
        capabilities = organised.get("/api/indexes/demo").json()["capabilities"]
    assert capabilities["scopes"] == {"by_class": True, "by_cluster": True}
    assert sum(capabilities["labels"]["cluster"].values()) == sum(capabilities["labels"]["label"].values())


def test_create_search_and_delete_an_index(tmp_path: Path, empty_index: Path) -> None:
    with client_for(empty_index, index_root=tmp_path / "made") as client:
        created = client.post("/api/indexes", json={"name": "new-one", "model": "efficientnet-lite0"})
        assert created.status_code == 201 and created.json()["count"] == 0
        assert IndexFolder(tmp_path / "made" / "new-one").is_index()
        assert {i["name"] for i in client.get("/api/indexes").json()} == {"fresh", "new-one"}
        assert client.post("/api/indexes", json={"name": "new-one"}).status_code == 409
        assert client.post("/api/indexes", json={"name": "../escape"}).status_code == 422
        unknown = client.post("/api/indexes", json={"name": "x", "model": "vgg99"})
        assert unknown.status_code == 422 and "efficientnet-lite0" in unknown.json()["detail"]
        assert client.post("/api/indexes", json={"name": "y", "colour": 1}).status_code == 422
        assert client.post("/api/indexes", json={"name": "y", "weights": "/etc/passwd"}).status_code == 422
        assert client.delete("/api/indexes/new-one").json() == {"deleted": "new-one"}
        assert not (tmp_path / "made" / "new-one").exists()
        assert client.get("/api/indexes/new-one").status_code == 404


def test_the_fields_of_a_new_index_are_the_index_plans() -> None:
    keywords = {item.name for item in fields(IndexPlan)}
    assert set(NewIndex.model_fields) - {"name"} <= keywords
    assert {"model", "layer", "pool", "pca", "whiten", "pca_sample", "index_type"} <= set(NewIndex.model_fields)


@pytest.mark.parametrize("arguments", [{}, {"pca": 0}, {"pca": 16, "whiten": True, "pca_sample": 50},
                                       {"index_type": "hnsw"}, {"layer": "head", "pool": "avg"}])
def test_an_index_created_over_http_is_the_one_python_creates_with_the_same_keywords(
        tmp_path: Path, empty_index: Path, arguments: dict) -> None:
    with client_for(empty_index, index_root=tmp_path / "made") as client:
        assert client.post("/api/indexes", json={"name": "web", **arguments}).status_code == 201
    ImageIndex.create(tmp_path / "python", **arguments).close()
    from_python = json.loads(IndexFolder(tmp_path / "python").manifest.read_text())
    from_http = json.loads(IndexFolder(tmp_path / "made" / "web").manifest.read_text())
    assert {k: v for k, v in from_http.items() if k != "created"} == \
        {k: v for k, v in from_python.items() if k != "created"}


def test_creating_an_index_needs_an_index_root(empty_index: Path) -> None:
    with client_for(empty_index) as client:
        refused = client.post("/api/indexes", json={"name": "new"})
    assert refused.status_code == 403 and "--index-root" in refused.json()["detail"]


# --- search ------------------------------------------------------------------------------------
def test_search_by_upload_finds_the_same_photo_first_with_timings(client: TestClient, gallery: Path) -> None:
    query = sorted((gallery / "shoes").glob("*.jpg"))[0]
    result = upload(client, query.read_bytes(), k=5).json()
    assert len(result["matches"]) == 5 and result["method"] == "cosine" and result["query_id"] is None
    top = result["matches"][0]
    assert top["path"] == str(query.resolve()) and top["score"] > 0.95
    assert [m["score"] for m in result["matches"]] == sorted((m["score"] for m in result["matches"]), reverse=True)
    assert {"decode", "embed", "search", "total"} <= set(result["timings_ms"])
    assert top["thumbnail"] == f"/api/indexes/clothes/images/{top['id']}/thumbnail"


def test_search_by_id_excludes_the_query_and_links_thumbnails(client: TestClient) -> None:
    result = search_get(client, id=3, k=4)
    assert result["query_id"] == 3 and len(result["matches"]) == 4
    assert 3 not in [m["id"] for m in result["matches"]]
    assert result["query_thumbnail"].endswith("/images/3/thumbnail")


@pytest.mark.parametrize("seed", [0, 7])
def test_random_search_with_a_seed_repeats(client: TestClient, seed: int) -> None:
    first = search_get(client, random="true", seed=seed)
    again = search_get(client, random="true", seed=seed)
    assert first["query_id"] == again["query_id"] and first["matches"] == again["matches"]


def test_the_http_search_fields_are_the_search_options() -> None:
    assert sorted(SearchFields.model_fields) == sorted(option_names())


def test_get_and_post_take_the_same_option_names_and_agree(client: TestClient, gallery: Path) -> None:
    query_id = ids_labelled(client)["hat"][0]
    query = client.get(f"/api/indexes/clothes/images/{query_id}").json()["path"]
    options = {"k": 4, "method": "euclidean", "min_score": 0.1, "where": ["label=hat", "label=shoes"],
               "path_prefix": str(gallery.resolve()), "class_confidence": 0.9}
    by_id = search_get(client, id=query_id, **options)
    by_upload = upload(client, Path(query).read_bytes(), **options).json()
    assert by_upload["matches"][0]["id"] == query_id  # the uploaded photo itself, which a search by id leaves out
    assert [m["id"] for m in by_upload["matches"][1:]] == [m["id"] for m in by_id["matches"][:3]]
    assert by_id["method"] == by_upload["method"] == "euclidean"
    assert {m["labels"]["label"] for m in by_id["matches"]} <= {"hat", "shoes"}


def test_euclidean_ranks_as_cosine_with_scores_one_over_one_plus_distance(client: TestClient) -> None:
    cosine = search_get(client, id=1, k=COUNT, method="cosine")
    euclidean = search_get(client, id=1, k=COUNT, method="euclidean")
    assert cosine["method"] == "cosine" and euclidean["method"] == "euclidean"
    assert [m["id"] for m in euclidean["matches"]] == [m["id"] for m in cosine["matches"]]
    for near, far in zip(cosine["matches"], euclidean["matches"], strict=True):
        assert far["score"] == pytest.approx(1 / (1 + (2 - 2 * near["score"]) ** 0.5), abs=1e-5)


def test_euclidean_scores_and_min_score(client: TestClient) -> None:
    result = upload(client, photo_bytes("hat"), k=COUNT, method="euclidean", min_score=0.5, expand="none").json()
    assert result["method"] == "euclidean" and result["matches"]
    assert all(0.5 <= m["score"] <= 1.0 for m in result["matches"])
    assert len(result["matches"]) < COUNT  # some images are further than the threshold


def test_metric_is_no_parameter_so_it_cannot_override_the_method(client: TestClient) -> None:
    by_id = client.get("/api/indexes/clothes/search", params={"id": 1, "metric": "euclidean"})
    by_upload = upload(client, photo_bytes(), metric="euclidean")
    for refused in (by_id, by_upload):
        assert refused.status_code == 422 and "metric: not a parameter" in refused.json()["detail"]


def test_unknown_method_is_422_naming_the_methods_of_the_index(client: TestClient) -> None:
    for response in (client.get("/api/indexes/clothes/search", params={"id": 1, "method": "forest"}),
                     upload(client, photo_bytes(), method="manhattan")):
        detail = response.json()["detail"]
        assert response.status_code == 422 and "cosine" in detail and "euclidean" in detail
        assert "train-similarity" in detail


@pytest.mark.parametrize("params", [{"id": 1, "k": 0}, {"id": 1, "k": 5000}, {}, {"id": 1, "random": "true"},
                                    {"id": "one"}, {"id": 1, "by_class": "true"}, {"id": 1, "by_cluster": 0},
                                    {"id": 1, "where": "label"}, {"id": 1, "class_confidence": 2}])
def test_bad_search_parameters_are_422(client: TestClient, params: dict) -> None:
    response = client.get("/api/indexes/clothes/search", params=params)
    assert response.status_code == 422 and response.json()["detail"]


def test_unknown_id_and_unknown_index_are_404(client: TestClient) -> None:
    missing = client.get("/api/indexes/clothes/search", params={"id": 9999})
    assert missing.status_code == 404 and "9999" in missing.json()["detail"]
    assert client.get("/api/indexes/other/search", params={"id": 1}).status_code == 404
    assert client.get("/api/indexes/clothes/images/9999").status_code == 404
    assert client.get("/api/indexes/clothes/images/9999/thumbnail").status_code == 404
    assert client.get("/api/indexes/clothes/images/9999/file").status_code == 404
    assert client.delete("/api/indexes/clothes/images/9999").status_code == 404


def test_where_with_one_name_twice_keeps_either_value(client: TestClient) -> None:
    dress = ids_labelled(client)["dress"][0]
    result = search_get(client, id=dress, k=COUNT, where=["label=hat", "label=shoes"])
    labels = [m["labels"]["label"] for m in result["matches"]]
    assert sorted(labels) == ["hat"] * PER_LABEL + ["shoes"] * PER_LABEL


def test_where_ignores_the_case_of_label_names_and_values(client: TestClient) -> None:
    dress = ids_labelled(client)["dress"][0]
    result = search_get(client, id=dress, k=COUNT, where=["LABEL=Hat", "label=SHOES"])
    labels = [m["labels"]["label"] for m in result["matches"]]
    assert sorted(labels) == ["hat"] * PER_LABEL + ["shoes"] * PER_LABEL


@pytest.mark.parametrize(("where", "named"), [("label=gown", "dress, hat"), ("label=dres", "dress, hat"),
                                              ("colour=red", "labels are: label")])
def test_where_on_a_label_no_image_has_is_422_naming_the_ones_that_exist(client: TestClient, where: str,
                                                                          named: str) -> None:
    for response in (client.get("/api/indexes/clothes/search", params={"id": 1, "where": where}),
                     upload(client, photo_bytes(), where=where)):
        assert response.status_code == 422 and named in response.json()["detail"]


def test_path_prefix_keeps_the_images_under_that_folder(client: TestClient, gallery: Path) -> None:
    shoes = ids_labelled(client)["shoes"][0]
    hats = str(gallery.resolve() / "hat")
    result = upload(client, photo_bytes("shoes"), k=COUNT, path_prefix=hats).json()
    assert len(result["matches"]) == PER_LABEL and all(m["path"].startswith(hats) for m in result["matches"])
    assert len(search_get(client, id=shoes, k=COUNT, path_prefix=hats)["matches"]) == PER_LABEL


def test_by_class_searches_within_the_predicted_class(organised_index: Path) -> None:
    with client_for(organised_index) as client:
        plain = upload(client, photo_bytes("dress", 3), index="demo", k=30).json()
        within = upload(client, photo_bytes("dress", 3), index="demo", k=30, by_class=1).json()
        assert client.get("/api/indexes/demo/search", params={"id": 1, "by_class": 1}).status_code == 200
    assert len({m["labels"]["label"] for m in plain["matches"]}) > 1  # the class narrows something
    assert plain["predicted_class"] is None
    assert list(within["predicted_class"]) == ["dress"]
    assert within["matches"] and {m["labels"]["label"] for m in within["matches"]} == {"dress"}


def test_by_class_without_a_classifier_is_422_saying_how_to_train_one(client: TestClient) -> None:
    response = client.get("/api/indexes/clothes/search", params={"id": 1, "by_class": 1})
    assert response.status_code == 422 and "train-classifier" in response.json()["detail"]


def test_by_cluster_searches_the_nearest_cluster(organised_index: Path) -> None:
    with client_for(organised_index) as client:
        plain = search_get(client, "demo", id=5, k=30)
        within = search_get(client, "demo", id=5, k=30, by_cluster=1)
        two = search_get(client, "demo", id=5, k=100, by_cluster=2)
    assert len({m["labels"]["cluster"] for m in plain["matches"]}) > 1
    assert within["matches"] and len({m["labels"]["cluster"] for m in within["matches"]}) == 1
    assert len({m["labels"]["cluster"] for m in two["matches"]}) == 2


def test_by_cluster_without_a_clustering_is_422_saying_how_to_make_one(client: TestClient) -> None:
    response = client.get("/api/indexes/clothes/search", params={"id": 1, "by_cluster": 1})
    assert response.status_code == 422 and "lookalike cluster" in response.json()["detail"]


def test_random_search_on_an_empty_index_says_why(empty_index: Path) -> None:
    with client_for(empty_index) as client:
        response = client.get("/api/indexes/fresh/search", params={"random": "true"})
    assert response.status_code == 422 and "empty" in response.json()["detail"]


# --- upload safety -------------------------------------------------------------------------------
def test_non_image_and_empty_uploads_are_422(client: TestClient) -> None:
    text = upload(client, b"just some text, not a photo", name="photo.jpg")
    assert text.status_code == 422 and "not an image" in text.json()["detail"]
    assert upload(client, b"", name="empty.jpg").status_code == 422
    truncated = upload(client, photo_bytes()[:2000])
    assert truncated.status_code == 422


def test_oversized_upload_is_413(gallery_index: Path) -> None:
    with client_for(gallery_index, max_upload_bytes=10_000) as client:
        response = upload(client, photo_bytes())
    assert response.status_code == 413 and "10,000 bytes" in response.json()["detail"]


def test_request_body_over_the_limit_is_413_before_parsing(gallery_index: Path) -> None:
    with client_for(gallery_index, max_request_bytes=50_000) as client:
        response = upload(client, photo_bytes() * 5)
    assert response.status_code == 413 and "50,000" in response.json()["detail"]


def test_too_many_pixels_is_422(client: TestClient, gallery_index: Path) -> None:
    bomb = png_bytes((8000, 6000), mode="1")  # 48 million pixels in a few kilobytes
    response = upload(client, bomb, name="bomb.png")
    assert len(bomb) < 100_000
    assert response.status_code == 422 and "48,000,000 pixels" in response.json()["detail"]
    with client_for(gallery_index, max_pixels=10_000) as strict:
        assert upload(strict, png_bytes((200, 200))).status_code == 422


# --- adding and removing -------------------------------------------------------------------------
def test_upload_adds_to_the_uploads_folder_with_the_sniffed_type_and_remove_deletes_it(
        empty_index: Path, tmp_path: Path) -> None:
    png = write_photo(tmp_path / "made.png", seed=3).read_bytes()
    with client_for(empty_index) as client:
        added = client.post("/api/indexes/fresh/images", files={"files": ("lies.jpg", png, "image/jpeg")})
        assert added.status_code == 200
        body = added.json()
        assert body["report"]["added"] == 1 and body["count"] == 1
        [image] = body["images"]
        assert image["uploaded_as"] == "lies.jpg"
        saved = Path(image["path"])
        assert saved.parent == (empty_index / "uploads").resolve() and saved.suffix == ".png"
        found = client.get("/api/indexes/fresh/search", params={"id": image["id"]})
        assert found.status_code == 200 and found.json()["matches"] == []  # the only image is the query
        assert client.delete(f"/api/indexes/fresh/images/{image['id']}").json()["count"] == 0
        assert not saved.exists()


def test_batch_upload_adds_every_photo(empty_index: Path) -> None:
    files = [("files", (f"p{n}.jpg", photo_bytes("pants", n), "image/jpeg")) for n in range(3)]
    with client_for(empty_index) as client:
        body = client.post("/api/indexes/fresh/images", files=files).json()
        assert body["report"]["added"] == 3 and len(body["images"]) == 3
        listed = client.get("/api/indexes/fresh/images", params={"limit": 2}).json()
        assert listed["count"] == 3 and len(listed["images"]) == 2
        one = client.get(f"/api/indexes/fresh/images/{body['images'][0]['id']}").json()
        assert one["width"] > 0 and one["size"] == len(photo_bytes("pants", 0))


@pytest.mark.parametrize("background", [False, True])
def test_the_same_photo_twice_in_a_batch_is_added_once(empty_index: Path, background: bool) -> None:
    files = [("files", (name, photo_bytes("hat"), "image/jpeg")) for name in ("a.jpg", "again.jpg")]
    with client_for(empty_index) as client:
        response = client.post("/api/indexes/fresh/images", files=files, params={"background": background})
        if background:
            assert wait_for_job(client, response.json()["job_url"])["report"]["added"] == 1
        else:
            assert response.status_code == 200 and response.json()["report"]["added"] == 1
        assert client.get("/api/indexes/fresh").json()["count"] == 1


def test_a_file_named_twice_or_inside_a_folder_named_is_added_once(empty_index: Path, gallery: Path) -> None:
    hats = gallery / "hat"
    with client_for(empty_index, allowed_roots=[gallery]) as client:
        started = client.post("/api/indexes/fresh/images/from-paths",
                              json={"paths": [str(hats), str(next(hats.glob("*.jpg"))), str(hats) + "/"]})
        assert started.status_code == 202 and started.json()["total"] == PER_LABEL
        job = wait_for_job(client, started.json()["job_url"])
        assert job["status"] == "done" and job["report"]["added"] == PER_LABEL


def test_a_bad_file_in_a_batch_refuses_the_whole_batch(empty_index: Path) -> None:
    files = [("files", ("good.jpg", photo_bytes(), "image/jpeg")), ("files", ("bad.jpg", b"nope", "image/jpeg"))]
    with client_for(empty_index) as client:
        response = client.post("/api/indexes/fresh/images", files=files)
        assert response.status_code == 422 and "bad.jpg" in response.json()["detail"]
        assert client.get("/api/indexes/fresh").json()["count"] == 0


def test_background_upload_reports_progress_until_done(empty_index: Path) -> None:
    files = [("files", (f"s{n}.jpg", photo_bytes("shirt", n), "image/jpeg")) for n in range(4)]
    with client_for(empty_index) as client:
        started = client.post("/api/indexes/fresh/images", params={"background": "true"}, files=files)
        assert started.status_code == 202 and started.json()["total"] == 4
        job = wait_for_job(client, started.json()["job_url"])
        assert job["status"] == "done" and job["done"] == 4 and job["progress"] == 1.0
        assert job["report"]["added"] == 4
        assert [j["id"] for j in client.get("/api/jobs").json()] == [job["id"]]
        assert client.get("/api/indexes/fresh").json()["count"] == 4
    assert client.get("/api/jobs/unknown").status_code == 404


def test_searches_keep_answering_while_a_job_adds_images(empty_index: Path, gallery: Path) -> None:
    with client_for(empty_index, allowed_roots=[gallery]) as client:
        client.post("/api/indexes/fresh/images", files={"files": ("first.jpg", photo_bytes(), "image/jpeg")})
        started = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(gallery)]})
        statuses = [upload_to(client, "fresh", photo_bytes("hat")).status_code for _ in range(5)]
        job = wait_for_job(client, started.json()["job_url"])
        assert statuses == [200] * 5 and job["status"] == "done" and job["report"]["added"] == COUNT
        assert client.get("/api/indexes/fresh").json()["count"] == COUNT + 1


def upload_to(client: TestClient, index: str, data: bytes):
    return client.post(f"/api/indexes/{index}/search", files={"image": ("q.jpg", data, "image/jpeg")})


def test_add_by_server_path_under_an_allowed_root(empty_index: Path, gallery: Path) -> None:
    with client_for(empty_index, allowed_roots=[gallery]) as client:
        started = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(gallery / "hat")]})
        assert started.status_code == 202
        job = wait_for_job(client, started.json()["job_url"])
        assert job["status"] == "done" and job["report"]["added"] == PER_LABEL


@pytest.mark.parametrize("requested", ["{root}/../outside", "/etc/passwd", "relative/photo.jpg", "{root}/link"])
def test_paths_outside_the_allowed_roots_are_refused(empty_index: Path, tmp_path: Path, requested: str) -> None:
    root = tmp_path / "root"
    write_photo(tmp_path / "outside" / "secret.png", seed=1)
    root.mkdir()
    os.symlink(tmp_path / "outside", root / "link")  # a link inside the root that leads out of it
    with client_for(empty_index, allowed_roots=[root]) as client:
        response = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [requested.format(root=root)]})
        assert response.status_code == 403 and response.json()["detail"]
        assert client.get("/api/indexes/fresh").json()["count"] == 0


def test_adding_by_path_is_off_without_roots_and_missing_files_are_404(empty_index: Path, tmp_path: Path) -> None:
    with client_for(empty_index) as client:
        off = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(tmp_path)]})
        assert off.status_code == 403 and "--allowed-roots" in off.json()["detail"]
    with client_for(empty_index, allowed_roots=[tmp_path]) as client:
        missing = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(tmp_path / "no.jpg")]})
        assert missing.status_code == 404


# --- images served only by id ---------------------------------------------------------------------
def test_thumbnail_is_a_small_jpeg_cached_in_the_index(client: TestClient, gallery_index: Path) -> None:
    response = client.get("/api/indexes/clothes/images/2/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.format == "JPEG" and max(thumb.size) == 256
    assert len(list((gallery_index / "thumbnails").glob("2-*-256.jpg"))) == 1
    assert client.get("/api/indexes/clothes/images/2/thumbnail").content == response.content


def test_file_by_id_is_the_indexed_file(client: TestClient) -> None:
    record = client.get("/api/indexes/clothes/images/5").json()
    response = client.get(record["file"])
    assert response.status_code == 200 and response.content == Path(record["path"]).read_bytes()


@pytest.mark.parametrize("path", ["/api/indexes/clothes/images/..%2F..%2Fetc%2Fpasswd/file",
                                  "/api/indexes/clothes/images/%2Fetc%2Fpasswd/thumbnail",
                                  "/static/..%2F..%2Fapp.py", "/static/../app.py"])
def test_no_file_is_served_by_a_request_path(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 422)
    assert b"root:" not in response.content and b"create_app" not in response.content


def test_cluster_maps_found_in_the_index_folder_are_listed_and_served(client: TestClient,
                                                                     gallery_index: Path) -> None:
    (gallery_index / "clusters").mkdir(exist_ok=True)
    Image.new("RGB", (20, 20), "red").save(gallery_index / "clusters" / "sheet-1.png")
    (gallery_index / "clusters" / "map.html").write_text("<html><body>map</body></html>")
    (gallery_index / "clusters" / "notes.txt").write_text("not an artifact")
    listed = client.get("/api/indexes/clothes/artifacts").json()
    assert [a["name"] for a in listed] == ["map.html", "sheet-1.png"]
    assert client.get(listed[1]["url"]).content[:4] == b"\x89PNG"
    html = client.get(listed[0]["url"])
    assert html.headers["content-security-policy"].startswith("sandbox")
    assert client.get("/api/indexes/clothes/artifacts/clusters/notes.txt").status_code == 404
    assert client.get("/api/indexes/clothes/artifacts/uploads/x.png").status_code == 404
    assert client.get("/api/indexes/clothes/artifacts/clusters/..%2Fmanifest.json").status_code == 404


# --- token and CORS ---------------------------------------------------------------------------------
def test_writes_need_the_token_when_set_and_reads_do_not(empty_index: Path) -> None:
    with client_for(empty_index, api_token="s3cret") as client:
        files = {"files": ("a.jpg", photo_bytes(), "image/jpeg")}
        missing = client.post("/api/indexes/fresh/images", files=files)
        assert missing.status_code == 401 and "token" in missing.json()["detail"]
        wrong = client.post("/api/indexes/fresh/images", files=files, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        assert client.delete("/api/indexes/fresh").status_code == 401
        assert client.delete("/api/indexes/fresh/images/1").status_code == 401
        assert client.post("/api/indexes/fresh/images/from-paths", json={"paths": ["/"]}).status_code == 401
        assert client.post("/api/indexes", json={"name": "x"}).status_code == 401
        assert client.get("/api/indexes/fresh").json()["count"] == 0
        right = client.post("/api/indexes/fresh/images", files=files, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and right.json()["count"] == 1
        also = client.post("/api/indexes/fresh/images", files={"files": ("b.jpg", photo_bytes("hat"), "image/jpeg")},
                           headers={"X-API-Token": "s3cret"})
        assert also.status_code == 200 and also.json()["count"] == 2
        searched = client.post("/api/indexes/fresh/search", files={"image": ("q.jpg", photo_bytes(), "image/jpeg")})
        assert searched.status_code == 200


def test_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_API_TOKEN", "from-env")
    assert ServerSettings.from_env().api_token == "from-env"
    monkeypatch.setenv("LOOKALIKE_API_TOKEN", "")
    assert ServerSettings.from_env().api_token is None


def test_cors_is_off_by_default_and_on_for_named_origins(gallery_index: Path) -> None:
    origin = {"Origin": "http://elsewhere.example"}
    with client_for(gallery_index) as client:
        assert "access-control-allow-origin" not in client.get("/api/indexes", headers=origin).headers
    with client_for(gallery_index, cors_origins=["http://elsewhere.example"]) as client:
        allowed = client.get("/api/indexes", headers=origin).headers
        assert allowed["access-control-allow-origin"] == "http://elsewhere.example"


def test_index_names_are_url_safe_and_unique(tmp_path: Path) -> None:
    folders = [tmp_path / "my photos", tmp_path / "b" / "my photos"]
    for folder in folders:
        ImageIndex.create(folder).close()
    with client_for(*folders) as client:
        assert [i["name"] for i in client.get("/api/indexes").json()] == ["my-photos", "my-photos-2"]
        assert client.get("/api/indexes/my-photos-2").json()["folder"] == str(folders[1])
