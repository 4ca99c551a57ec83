"""Shared fixtures: real photos, generated images, a session-wide embedder, small indexes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from clusters import milvus_server, ray_nodes  # noqa: F401  (real servers per session: -k milvus_server, -k multinode)
from PIL import Image
from postgres_server import postgres_catalog, postgres_server  # noqa: F401  (a real PostgreSQL: -k postgres)

from lookalike.embedders import get_embedder
from lookalike.index import ImageIndex

REPO = Path(__file__).resolve().parent.parent
DEMO_GALLERY = REPO / "demo" / "gallery"


def datasets_path() -> Path:
    configured = os.environ.get("LOOKALIKE_DATASETS")
    return Path(configured) if configured else REPO.parent / "shared" / "datasets"


def require_dataset(name: str) -> Path:
    """The shared dataset folder; skipped with the reason on a user's machine, a failure in CI."""
    folder = datasets_path() / name
    if not (folder / "labels.csv").exists():
        message = f"dataset {folder} not found (set LOOKALIKE_DATASETS to the folder holding {name}/)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One ONNX export per test session, kept out of the user's cache unless one is configured."""
    if "LOOKALIKE_CACHE" not in os.environ:
        os.environ["LOOKALIKE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def embedder():
    return get_embedder()


@pytest.fixture(scope="session")
def clothing() -> Path:
    return require_dataset("clothing")


@pytest.fixture(scope="session")
def corel() -> Path:
    return require_dataset("corel1k")


def write_photo(path: Path, seed: int, size: tuple[int, int] = (160, 120), mode: str = "RGB") -> Path:
    """A synthetic picture: smooth colour gradients plus blobs, distinct per seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(x * rng.uniform(2, 12) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(2, 12)) for _ in range(3)]
    pixels = ((np.stack(channels, axis=-1) + 1) * 127.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Eight generated photos in two subfolders."""
    folder = tmp_path / "photos"
    for seed in range(8):
        write_photo(folder / f"set{seed % 2}" / f"photo{seed}.png", seed)
    return folder


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """A writable copy of 3 real photos per clothing type from the bundled demo gallery."""
    folder = tmp_path / "gallery"
    for label_folder in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir()):
        for photo in sorted(label_folder.glob("*.jpg"))[:3]:
            target = folder / label_folder.name / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, target)
    return folder


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> ImageIndex:
    """The whole bundled demo gallery, indexed once per session (read-only for tests)."""
    folder = tmp_path_factory.mktemp("demo-index")
    index = ImageIndex.create(folder / "index")
    index.add_folder(DEMO_GALLERY)
    yield index
    index.close()


@pytest.fixture
def demo_clone(tmp_path: Path, demo_index: ImageIndex) -> ImageIndex:
    """A writable index of the demo gallery, copied from demo_index's records and vectors (no embedding)."""
    from lookalike.index import NewImage

    index = ImageIndex.create(tmp_path / "demo-clone")
    ids, vectors = demo_index.vectors()
    records = [demo_index.record(int(i)) for i in ids]
    run = index.sync()
    run.store_images([NewImage(r.path, r.content_hash, r.size, r.mtime, r.width, r.height) for r in records], vectors)
    run.finish()
    yield index
    index.close()


def wait_for_job(client, job_url: str, seconds: float = 60) -> dict:
    """Poll an HTTP background job (a FastAPI TestClient) until it is done or failed."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(job_url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_url} did not finish in {seconds}s")
