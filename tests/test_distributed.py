"""Ingestion on a real local Ray instance (2 CPUs): the same index as the local path, resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from conftest import DEMO_GALLERY  # noqa: E402

from lookalike.embedders import model_info  # noqa: E402
from lookalike.embedders.spec import EmbedderSpec  # noqa: E402
from lookalike.index import ImageIndex, ModelMismatchError  # noqa: E402
from lookalike.scale import distributed  # noqa: E402
from lookalike.scale.distributed import EmbedWorker, ingest_with_ray, start_ray, write_shard  # noqa: E402

MODEL = "efficientnet-lite0"
TAPPED_LAYER = model_info(MODEL).layers[1]  # an inner stage, not the default head
TAPPED_POOL = "gem"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module: starting Ray takes several seconds."""
    import ray

    started = start_ray(ray_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real photos per clothing type plus two broken files."""
    folder = tmp_path_factory.mktemp("ray-photos")
    for label in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir()):
        for photo in sorted(label.glob("*.jpg"))[:2]:
            (folder / label.name).mkdir(exist_ok=True)
            shutil.copy(photo, folder / label.name / photo.name)
    (folder / "not-a-photo.jpg").write_text("plain text")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def local_index(photos: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same photos indexed by the embedded (non-Ray) path."""
    with ImageIndex.create(tmp_path_factory.mktemp("local") / "index") as index:
        report = index.add_folder(photos)
        yield index, report


@pytest.fixture(scope="module")
def tapped_local_index(photos: Path, tmp_path_factory: pytest.TempPathFactory):
    """The photos indexed by the embedded path with an inner layer and GeM pooling."""
    folder = tmp_path_factory.mktemp("tapped") / "index"
    with ImageIndex.create(folder, model=MODEL, layer=TAPPED_LAYER, pool=TAPPED_POOL) as index:
        index.add_folder(photos)
        yield index


def vectors_by_path(index: ImageIndex) -> dict[str, np.ndarray]:
    ids, vectors = index.vectors()
    path_of = {image_id: path for path, image_id in index.ids_by_path().items()}
    return {path_of[int(i)]: v for i, v in zip(ids, vectors, strict=True)}


def test_ray_index_holds_the_same_vectors_and_failures_as_the_local_path(ray_cluster, photos, local_index,
                                                                         tmp_path) -> None:
    expected_index, expected_report = local_index
    with ImageIndex.create(tmp_path / "index") as index:
        report = ingest_with_ray(index, photos)
        got = vectors_by_path(index)
        shards = index.files.ray_shards
    expected = vectors_by_path(expected_index)
    assert report.added == len(expected) == 20
    assert report.workers == 2
    assert set(got) == set(expected)
    for path, vector in expected.items():
        np.testing.assert_allclose(got[path], vector, atol=1e-5)
    reasons = {f.path.name: f.reason for f in report.failures}
    assert reasons == {f.path.name: f.reason for f in expected_report.failures}
    assert set(reasons) == {"not-a-photo.jpg", "empty.jpg"}
    assert shards.is_dir() and not list(shards.glob("*.parquet"))  # all merged


def test_ray_workers_embed_with_the_index_layer_and_pool(ray_cluster, photos, tapped_local_index,
                                                          tmp_path) -> None:
    with ImageIndex.create(tmp_path / "index", model=MODEL, layer=TAPPED_LAYER, pool=TAPPED_POOL) as index:
        report = ingest_with_ray(index, photos)
        got = vectors_by_path(index)
    expected = vectors_by_path(tapped_local_index)
    assert report.added == len(expected) == 20
    assert set(got) == set(expected)
    for path, vector in expected.items():
        assert len(got[path]) == len(vector) != 1280  # the tapped stage's channels, not the head's
        cosine = float(got[path] @ vector / (np.linalg.norm(got[path]) * np.linalg.norm(vector)))
        assert cosine >= 0.9999, path


def test_a_worker_whose_embedder_differs_from_the_index_refuses_to_start(tapped_local_index, monkeypatch) -> None:
    monkeypatch.delenv(distributed.THREADS_VARIABLE, raising=False)  # the worker sets it; restored after
    description = tapped_local_index.manifest.embedder
    other_pool = EmbedderSpec(MODEL, TAPPED_LAYER, "max")
    with pytest.raises(ModelMismatchError, match=r"pool: index 'gem' vs the Ray worker .* 'max'"):
        EmbedWorker(spec=other_pool, description=description)
    worker = EmbedWorker(spec=tapped_local_index.embedder_spec(), description=description)
    assert worker.embedder.describe() == description


def test_a_ray_run_whose_workers_make_other_vectors_fails_naming_the_difference(ray_cluster, photos,
                                                                                tmp_path) -> None:
    with ImageIndex.create(tmp_path / "index") as index:
        recorded = index.manifest.embedder
        index._state.manifest = index.manifest.but(embedder=recorded | {"version": "weights-000000000000/export-1"})
        with pytest.raises(ModelMismatchError, match=r"version: index 'weights-000000000000/export-1' vs the Ray "
                                                     r"worker on .* 'weights-"):
            ingest_with_ray(index, photos)
        assert len(index) == 0


def test_the_default_reduction_policy_applies_after_a_ray_run(ray_cluster, photos, tmp_path) -> None:
    with ImageIndex.create(tmp_path / "index", pca=8) as index:
        assert index.info()["reduction"] == "none"
        report = ingest_with_ray(index, photos)
        assert report.added == 20
        assert report.reduction is not None and report.reduction == index.info()["reduction"]
        assert "-> 8" in report.reduction
        assert index.searcher.searchable_vectors(index.ids()[:1].tolist()).shape == (1, 8)


def test_interrupted_run_resumes_where_it_stopped(ray_cluster, photos, local_index, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(distributed, "SHARD_ROWS", 8)

    def crash_after_first_shard(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with ImageIndex.create(tmp_path / "index") as index, pytest.raises(KeyboardInterrupt):
        ingest_with_ray(index, photos, batch_size=4, progress=crash_after_first_shard)
    with ImageIndex.open(tmp_path / "index") as index:
        kept = len(index)
        assert 6 <= kept < 22  # the first shard was committed (failures are not images)
        report = ingest_with_ray(index, photos, batch_size=4)
        assert report.unchanged == kept
        assert report.added == 20 - kept
        got = vectors_by_path(index)
    expected = vectors_by_path(local_index[0])
    assert set(got) == set(expected)
    for path, vector in expected.items():
        np.testing.assert_allclose(got[path], vector, atol=1e-5)


def test_a_finished_shard_left_by_a_crash_is_merged_not_embedded_again(ray_cluster, photos, tmp_path) -> None:
    target = sorted(photos.rglob("*.jpg"))[5]
    planted = np.zeros(1280, dtype=np.float32)
    planted[7] = 1.0  # no network produces this: it can only come from the shard
    stat = target.stat()
    shards = tmp_path / "shards"
    shards.mkdir()
    from lookalike.files import content_hash

    write_shard(shards, {"path": np.asarray([str(target)]), "content_hash": np.asarray([content_hash(target)]),
                         "size": np.asarray([stat.st_size]), "mtime": np.asarray([stat.st_mtime]),
                         "width": np.asarray([10]), "height": np.asarray([20]), "vector": planted[None],
                         "error": np.asarray([""])})
    with ImageIndex.create(tmp_path / "index") as index:
        report = ingest_with_ray(index, photos, shard_dir=shards)
        assert report.resumed == 1
        assert report.added == 20
        record = index.record_by_path(target)
        np.testing.assert_array_equal(index.vectors([record.id])[0], planted)
    assert not list(shards.glob("*.parquet"))


def test_a_leftover_shard_of_other_vectors_is_discarded_not_a_lasting_failure(photos, tmp_path) -> None:
    """A shard from a run with another layer (8-d here) or a damaged one must not make every later run fail."""
    shards = tmp_path / "shards"
    shards.mkdir()
    target = sorted(photos.rglob("*.jpg"))[0]
    write_shard(shards, {"path": np.asarray([str(target)]), "content_hash": np.asarray(["x"]),
                         "size": np.asarray([1]), "mtime": np.asarray([0.0]), "width": np.asarray([1]),
                         "height": np.asarray([1]), "vector": np.ones((1, 8), np.float32), "error": np.asarray([""])})
    (shards / "shard-0-0.parquet").write_bytes(b"not parquet")
    with ImageIndex.create(tmp_path / "index") as index:
        run = index.sync()
        assert distributed.merge_leftover_shards(run, shards, index.embedder.dimension) == 0
        report = run.finish()
        assert len(index) == 0
    assert sorted("leftover shard discarded" in f.reason for f in report.failures) == [True, True]
    assert not list(shards.iterdir())


def test_fsspec_uri_source_is_indexed_and_rerun_is_a_no_op(ray_cluster, photos, tmp_path) -> None:
    source = f"file://{photos}"
    with ImageIndex.create(tmp_path / "index") as index:
        first = ingest_with_ray(index, source)
        assert first.added == 20
        assert index.record_by_path(f"file://{sorted(photos.rglob('*.jpg'))[0]}") is not None
        again = ingest_with_ray(index, source)
        assert (again.added, again.unchanged) == (0, 20)


def test_cli_index_with_ray_and_an_unreachable_address(ray_cluster, photos, tmp_path, capsys) -> None:
    from lookalike.cli import main

    index = str(tmp_path / "cli-index")
    assert main(["index", str(photos), "--index", index, "--ray", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert (output["added"], output["failed"], output["count"], output["workers"]) == (20, 2, 20, 2)
    started = time.perf_counter()
    assert main(["index", str(photos), "--index", str(tmp_path / "other"), "--ray", "127.0.0.1:9"]) == 2
    assert time.perf_counter() - started < 15
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in capsys.readouterr().err


def _our_actor_processes() -> list[int]:
    """Embedding actors of the Ray instance this test process started (never anyone else's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "MapBatches(EmbedWorker)" in title and _descends_from(int(entry.name), os.getpid()):
            found.append(int(entry.name))
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_lost(ray_cluster, photos, local_index, tmp_path,
                                                                 monkeypatch) -> None:
    monkeypatch.setattr(distributed, "SHARD_ROWS", 4)
    killed = []

    def kill_a_worker_once(done: int, total: int) -> None:
        if not killed:
            victims = _our_actor_processes()
            assert victims, "no embedding actor found to kill"
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])

    with ImageIndex.create(tmp_path / "index") as index:
        report = ingest_with_ray(index, photos, batch_size=2, progress=kill_a_worker_once)
        got = vectors_by_path(index)
    assert killed
    assert report.added == 20
    expected = vectors_by_path(local_index[0])
    assert set(got) == set(expected)
    for path, vector in expected.items():
        np.testing.assert_allclose(got[path], vector, atol=1e-5)


def test_ray_ingestion_into_a_milvus_store_searches_like_the_local_index(ray_cluster, photos, local_index,
                                                                         tmp_path) -> None:
    pytest.importorskip("milvus_lite")
    with ImageIndex.create(tmp_path / "index", store=f"{tmp_path}/vectors.db/ray_photos") as index:
        report = ingest_with_ray(index, photos)
        assert (report.added, len(index)) == (20, 20)
        expected_index = local_index[0]
        ids, _ = index.searcher.nearest(vectors_by_path(expected_index)[str(sorted(photos.rglob("*.jpg"))[0])], 25)
        assert len(ids) == 20  # the Milvus collection holds every vector
        for path in sorted(vectors_by_path(expected_index))[:3]:
            expected = [m.path for m in expected_index.search(path, k=5).matches]
            assert [m.path for m in index.search(path, k=5).matches] == expected
