"""The HTTP API fuzzed by Schemathesis against its own OpenAPI schema (issue 17): every operation, on a server
without a token and on one with a token, called with it and without it. In process (ASGI), over a scratch copy
of demo photos indexed with a handcrafted model (these tests are about HTTP, not about vectors).

Every answer must be no server error and carry a documented status code, content type and headers, with a body
that validates against the documented schema; invalid requests must be refused with a 4xx, and valid ones
accepted where the schema can say what is valid. Uploads are real images of six formats, or such images cut
short or with bytes overwritten.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from conftest import DEMO_GALLERY
from fastapi import FastAPI
from hypothesis import HealthCheck, event, settings
from PIL import Image
from schemathesis import Case, HookContext
from schemathesis.checks import CheckFunction, negative_data_rejection, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation

from lookalike.index import ImageIndex
from lookalike.organise.classifier import train_classifier
from lookalike.organise.clustering import cluster_index
from lookalike.web import ServerSettings, create_app

pytestmark = pytest.mark.filterwarnings("ignore:Truncated File Read")  # Pillow, on the damaged uploads

EXAMPLES = 25  # drawn per operation and caller, after the schema's own edge cases (the coverage phase)
TOKEN = "fuzz-token"
SERVED = "gallery"  # the index every {name} in a path names: the fuzzer's requests reach images and searches
PER_LABEL = 3
IMAGES = PER_LABEL * 10  # ten clothing types
ARTIFACTS = [("clusters", "cluster-000.png"), ("clusters", "cluster-003.png"), ("maps", "map.html")]
PHOTOS = "/fuzz-photos"  # stands for the allowed root in drawn paths; the test puts the real one in valid bodies
# Validity that depends on the index or on other fields, which a schema cannot state (the routes say so): a
# new index's layer must be one its model has and its memory budget must fit the index type; a search's method,
# classes and clusters must be ones the index has, and a GET search needs exactly one of id and random=true.
# explain needs an index whose model has a spatial feature map (this one's is not) and, by POST, each photo once (an
# id or an upload). These may answer a schema-valid request with 422, so the check that valid data is accepted is
# off for them.
DEPENDENT_VALIDITY = {"POST /api/indexes", "GET /api/indexes/{name}/search", "POST /api/indexes/{name}/search",
                      "GET /api/indexes/{name}/explain", "POST /api/indexes/{name}/explain"}

OPENAPI = create_app([], ServerSettings()).openapi()  # the document every app serves (it needs no index)
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(max_examples=EXAMPLES, deterministic=True, database="none")
schema.config.update(parameters={"path.name": SERVED})


@cache
def photos() -> tuple[bytes, ...]:
    """Real images for uploads: demo photos (JPEG) and a generated picture in each other accepted format."""
    found = [sorted((DEMO_GALLERY / label).glob("*.jpg"))[0].read_bytes() for label in ("dress", "hat", "shoes")]
    picture = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
    for kind in ("PNG", "GIF", "BMP", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        picture.save(buffer, kind)
        found.append(buffer.getvalue())
    return tuple(found)


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """A real image, or one cut short, or with a run of its bytes overwritten."""
    data = draw(st.sampled_from(photos()))
    damage = draw(st.sampled_from(["none", "none", "cut", "overwrite"]))
    if damage == "cut":
        return data[:draw(st.integers(1, len(data) - 1))]
    if damage == "overwrite":
        start = draw(st.integers(0, len(data) - 1))
        return data[:start] + draw(st.binary(min_size=1, max_size=64)) + data[start + 64:]
    return data


@schema.hook
def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy:
    """Uploaded files become images (the schema can only say `binary`, the server needs a picture), and half the
    server-side paths to add are folders or photos under the allowed root."""
    if not isinstance(body, dict):
        return st.just(body)
    drawn: dict[str, st.SearchStrategy] = {}
    if isinstance(body.get("paths"), list):
        under_root = st.sampled_from(["", "/hat", "/shoes", "/dress/../pants"]).map(lambda tail: [PHOTOS + tail])
        drawn["paths"] = st.one_of(st.just(body["paths"]), under_root)
    if isinstance(body.get("image"), bytes | str):
        drawn["image"] = image_bytes()
    files = body.get("files")
    if isinstance(files, list) and files and all(isinstance(f, bytes | str) for f in files):
        drawn["files"] = st.lists(image_bytes(), min_size=len(files), max_size=len(files))
    return st.fixed_dictionaries(drawn).map(lambda parts: body | parts)


@schema.hook
def flatmap_query(context: HookContext, query: Any) -> st.SearchStrategy:
    """Drawn searches from the index keep the rules the schema cannot state (exactly one of id and random=true, a
    method the index has), so the fuzzed options reach the search itself; the schema's own edge cases (the
    coverage phase, which no hook changes) still break them."""
    if context.operation.label != "GET /api/indexes/{name}/search" or not isinstance(query, dict):
        return st.just(query)
    others = {name: value for name, value in query.items() if name not in ("id", "random", "method")}
    start = st.one_of(st.integers(1, IMAGES).map(lambda image_id: {"id": image_id}), st.just({"random": True}))
    method = st.sampled_from([{}, {"method": "cosine"}, {"method": "euclidean"}])
    return st.builds(lambda s, m: others | s | m, start, method)


@schema.hook
def flatmap_path_parameters(context: HookContext, path_parameters: Any) -> st.SearchStrategy:
    """Half the drawn image ids and artifacts are ones the index has, so those routes answer with files too."""
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    if "image_id" in path_parameters:
        existing = st.integers(1, IMAGES).map(lambda image_id: path_parameters | {"image_id": image_id})
        return st.one_of(st.just(path_parameters), existing)
    if "file" in path_parameters:
        existing = st.sampled_from(ARTIFACTS).map(lambda found: path_parameters | dict(zip(("folder", "file"), found,
                                                                                            strict=True)))
        return st.one_of(st.just(path_parameters), existing)
    return st.just(path_parameters)


@dataclass
class Server:
    app: FastAPI
    token: str | None  # the token this caller sends (None: none)
    photos: Path  # the allowed root


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder: a copy of demo photos, and under made/ an index of them with labels, a classifier,
    clusters (with contact sheets) and a map page."""
    root = tmp_path_factory.mktemp("fuzz")
    rows = ["path,label"]
    for label_folder in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir()):
        for photo in sorted(label_folder.glob("*.jpg"))[:PER_LABEL]:
            (root / "photos" / label_folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, root / "photos" / label_folder.name / photo.name)
            rows.append(f"{label_folder.name}/{photo.name},{label_folder.name}")
    (root / "photos" / "labels.csv").write_text("\n".join(rows) + "\n")
    with ImageIndex.create(root / "made" / SERVED, model="color-histogram") as index:
        index.add_folder(root / "photos")
        train_classifier(index, root / "photos" / "labels.csv", test_fraction=1 / PER_LABEL)
        cluster_index(index, k=4)
        assert len(index) == IMAGES
    (root / "made" / SERVED / "maps").mkdir()
    (root / "made" / SERVED / "maps" / "map.html").write_text("<html><body>map</body></html>")
    return root


@pytest.fixture(params=["open", "with-token", "without-token"])
def server(request: pytest.FixtureRequest, gallery: Path, tmp_path: Path) -> Iterator[Server]:
    """The app over a fresh copy of the scratch folder (the index keeps paths relative to itself, so photos and
    index move together): each operation starts from the same state, and the index lies under --index-root so it
    may be deleted too. Schemathesis runs the app's lifespan from its first request to the end of the test."""
    shutil.copytree(gallery, tmp_path, dirs_exist_ok=True)
    settings = ServerSettings(index_root=tmp_path / "made", allowed_roots=[tmp_path / "photos"],
                              api_token=None if request.param == "open" else TOKEN)
    app = create_app([tmp_path / "made" / SERVED], settings)
    assert app.openapi() == OPENAPI  # the schema fuzzed is this app's own
    yield Server(app, TOKEN if request.param == "with-token" else None, tmp_path / "photos")
    app.state.registry.close()  # the lifespan's end closed it already, unless no request started it


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one server per operation, on purpose
def test_every_operation_answers_as_documented(case: Case, server: Server) -> None:
    if server.token:
        case.headers = {name: value for name, value in (case.headers or {}).items()
                        if name.lower() not in ("authorization", "x-api-token")}
        case.headers["Authorization"] = f"Bearer {server.token}"
    if isinstance(case.body, dict) and isinstance(case.body.get("paths"), list) and not negated_body(case):
        case.body["paths"] = [str(server.photos) + p.removeprefix(PHOTOS) if str(p).startswith(PHOTOS) else p
                              for p in case.body["paths"]]
    response = case.call_and_validate(app=server.app, excluded_checks=checks_that_do_not_apply(case))
    event(f"answered {response.status_code // 100}xx")  # pytest --hypothesis-show-statistics counts them


def checks_that_do_not_apply(case: Case) -> list[CheckFunction]:
    excluded: list[CheckFunction] = []
    if case.operation.label in DEPENDENT_VALIDITY or uploads_a_non_image(case):
        excluded.append(positive_data_acceptance)
    if case.media_type == "multipart/form-data" and negated_body(case):
        # every form field is text: an empty one reads as not given and a repeated one as its last value (what
        # browsers' forms need), so a field made the wrong type or a list arrives valid
        excluded.append(negative_data_rejection)
    return excluded


def negated_body(case: Case) -> bool:
    """Whether the body was made invalid on purpose (then the paths stay outside the root: a 403 either way)."""
    return case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)


def uploads_a_non_image(case: Case) -> bool:
    """Whether the case uploads bytes that are not one of the real images (the schema can only say `binary`)."""
    body = case.body if isinstance(case.body, dict) else {}
    files = body.get("files")
    sent = [body.get("image"), *(files if isinstance(files, list) else [files])]
    return any(isinstance(f, bytes | str) and f not in photos() for f in sent)
