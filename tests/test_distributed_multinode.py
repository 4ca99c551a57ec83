"""Ingestion on a Ray cluster of separate node processes (tests/clusters.py: a head and a worker node, 1 CPU each,
started with `ray start`): the same index as the local path, and a worker node lost mid-run.
`pytest -k multinode` runs these."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from clusters import RayNodes, descendants  # noqa: E402
from conftest import DEMO_GALLERY  # noqa: E402

from lookalike.index import ImageIndex  # noqa: E402
from lookalike.scale import distributed  # noqa: E402
from lookalike.scale.distributed import ingest_with_ray  # noqa: E402

ACTOR_TITLE = "MapBatches(EmbedWorker)"  # what Ray Data names an embedding actor's process


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real photos per clothing type (40)."""
    folder = tmp_path_factory.mktemp("multinode-photos")
    for label in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir()):
        (folder / label.name).mkdir()
        for photo in sorted(label.glob("*.jpg"))[:4]:
            shutil.copy(photo, folder / label.name / photo.name)
    return folder


@pytest.fixture(scope="module")
def local_vectors(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The photos' vectors from the embedded (non-Ray) path."""
    with ImageIndex.create(tmp_path_factory.mktemp("multinode-local") / "index") as index:
        index.add_folder(photos)
        return vectors_by_path(index)


def vectors_by_path(index: ImageIndex) -> dict[str, np.ndarray]:
    ids, vectors = index.vectors()
    path_of = {image_id: path for path, image_id in index.ids_by_path().items()}
    return {path_of[int(i)]: v for i, v in zip(ids, vectors, strict=True)}


def assert_same_vectors(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for path, vector in expected.items():
        np.testing.assert_allclose(got[path], vector, atol=1e-5)


def actors_of(node: subprocess.Popen) -> list[int]:
    """Embedding actor processes started by a node (Ray's workers start sessions of their own)."""
    found = []
    for pid in descendants(node.pid):
        try:
            title = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if ACTOR_TITLE in title:
            found.append(pid)
    return found


def is_alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_multinode_ray_index_holds_the_same_vectors_as_the_local_path(ray_nodes: RayNodes, photos: Path,
                                                                       local_vectors, tmp_path: Path) -> None:
    with ImageIndex.create(tmp_path / "index") as index:
        report = ingest_with_ray(index, photos, ray=ray_nodes.address)
        assert (report.added, report.workers) == (40, 2)  # one actor per node: each node has 1 CPU
        assert_same_vectors(vectors_by_path(index), local_vectors)


def test_multinode_worker_node_killed_mid_run_its_batches_are_retried_and_nothing_is_indexed_twice(
        ray_nodes: RayNodes, photos: Path, local_vectors, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(distributed, "SHARD_ROWS", 2)  # the run merges as it goes: a kill lands mid-run
    worker = ray_nodes.nodes[-1]
    merged, finished = threading.Event(), threading.Event()
    killed: list[int] = []

    def kill_the_worker_node_once_it_embeds() -> None:
        while not finished.is_set() and not killed:
            actors = actors_of(worker)
            if actors and merged.is_set():
                ray_nodes.kill_node(worker)
                killed.extend(actors)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_the_worker_node_once_it_embeds, daemon=True)
    watcher.start()
    try:
        with ImageIndex.create(tmp_path / "index") as index:
            report = ingest_with_ray(index, photos, ray=ray_nodes.address, batch_size=1,
                                     progress=lambda done, total: merged.set())
            finished.set()
            watcher.join()
            assert killed, "the worker node never ran an embedding actor"
            assert worker.poll() is not None and not any(map(is_alive, killed))
            assert report.added == len(index) == 40
            paths = list(index.ids_by_path())
            assert len(paths) == len(set(paths)) == 40  # no photo stored twice
            assert len(index.vectors()[0]) == 40
            assert_same_vectors(vectors_by_path(index), local_vectors)
    finally:
        finished.set()
        if worker not in ray_nodes.nodes:
            ray_nodes.start_node()  # a replacement, for the tests after this one
