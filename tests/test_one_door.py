"""One door: the same photos and arguments give the same index and the same answers through Python, the CLI
and HTTP. The folder holds more real photos than the default-PCA threshold, so the default reduction is part
of what must agree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import wait_for_job
from fastapi.testclient import TestClient

from lookalike.cli import main
from lookalike.index import ImageIndex
from lookalike.reduction import DEFAULT_MIN_IMAGES
from lookalike.web import ServerSettings, create_app

PHOTOS = DEFAULT_MIN_IMAGES + 40
QUERIES = 6
SETTINGS = ("embedder", "index_type", "index_params", "reduction_plan")


@pytest.fixture(scope="module")
def photos(clothing: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """More clothing training photos than the default-PCA threshold, in their type folders."""
    folder = tmp_path_factory.mktemp("one-door-photos")
    for photo in sorted((clothing / "train").rglob("*.jpg"))[:: 2][:PHOTOS]:
        (folder / photo.parent.name).mkdir(exist_ok=True)
        shutil.copy(photo, folder / photo.parent.name / photo.name)
    return folder


@pytest.fixture(scope="module")
def queries(clothing: Path) -> list[Path]:
    """Held-out photos (not indexed), one per type for the first few types."""
    return [sorted(folder.glob("*.jpg"))[0] for folder in sorted((clothing / "test").iterdir())[:QUERIES]]


@pytest.fixture(scope="module")
def three_indexes(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("one-door-indexes")
    with ImageIndex.create(root / "python") as index:
        index.add_folder(photos)
    assert main(["index", str(photos), "--index", str(root / "cli"), "--json"]) == 0
    with TestClient(create_app([], ServerSettings(index_root=root, allowed_roots=[photos]))) as client:
        assert client.post("/api/indexes", json={"name": "http"}).status_code == 201
        job = client.post("/api/indexes/http/images/from-paths", json={"paths": [str(photos)]}).json()
        assert wait_for_job(client, job["job_url"], seconds=300)["status"] == "done"
    return {door: root / door for door in ("python", "cli", "http")}


def _settings(folder: Path) -> dict:
    with ImageIndex.open(folder) as index:
        manifest = index.manifest
        reduction = {k: v for k, v in manifest.reduction.items() if k != "digest"}
        return {key: getattr(manifest, key) for key in SETTINGS} | {"reduction": reduction, "count": len(index)}


def test_every_door_builds_the_same_index_with_the_default_pca(three_indexes: dict[str, Path]) -> None:
    built = {door: _settings(folder) for door, folder in three_indexes.items()}
    assert built["python"]["reduction"]["components"] == 128
    assert built["python"]["reduction"]["fitted_on"] == built["python"]["count"] == PHOTOS
    assert built["cli"] == built["python"]
    assert built["http"] == built["python"]


def test_every_door_answers_a_query_with_the_same_top_ten(three_indexes: dict[str, Path],
                                                          queries: list[Path], capsys) -> None:
    for query in queries:
        with ImageIndex.open(three_indexes["python"]) as index:
            python = [Path(m.path).name for m in index.search(query, k=10).matches]
        capsys.readouterr()
        assert main(["search", str(query), "--index", str(three_indexes["cli"]), "-k", "10", "--json"]) == 0
        cli = [Path(m["path"]).name for m in json.loads(capsys.readouterr().out)["matches"]]
        with TestClient(create_app([three_indexes["http"]], ServerSettings())) as client:
            answer = client.post("/api/indexes/http/search", files={"image": (query.name, query.read_bytes())},
                                 data={"k": "10"})
            assert answer.status_code == 200, answer.text
            http = [Path(m["path"]).name for m in answer.json()["matches"]]
        assert len(python) == 10
        assert cli == python, query.name
        assert http == python, query.name
