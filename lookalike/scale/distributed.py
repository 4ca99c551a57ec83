"""Indexing on a Ray cluster: workers read, decode and embed; the index merges their shards.

    list (driver) -> read + decode + embed (a pool of Ray actors, one ONNX model each)
                  -> Parquet shard (driver, atomic) -> merge into the index (store API) -> delete shard

A shard is written before it is merged and deleted only after the merge is committed, so a crash
at any point loses no finished shard: the next run merges leftover shards first, then embeds only
what the index does not hold yet. Ray retries a task whose worker died. Without an address a local
Ray instance is started; with one the run joins that cluster (which must have lookalike installed).
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from lookalike.embedders import get_embedder
from lookalike.files import content_hash, stat_file, walk_images
from lookalike.images import is_image_path
from lookalike.index import ImageIndex, IndexReport
from lookalike.index.store import NewImage
from lookalike.ingest import Failure, embed_files
from lookalike.settings import cache_dir

SHARD_FOLDER = "ray-shards"  # inside the index folder unless shard_dir says otherwise
SHARD_ROWS = 256  # images per shard: at most this much embedding is redone after a driver crash
BATCH_SIZE = 32  # images per actor call
CONNECT_SECONDS = 5.0
DEFAULT_RAY_PORT = 6379
THREADS_VARIABLE = "LOOKALIKE_ONNX_THREADS"

Progress = Callable[[int, int], None]


@dataclass
class DistributedReport(IndexReport):
    """An IndexReport plus what the cluster did."""

    resumed: int = 0  # images merged from shards an interrupted run had finished
    workers: int = 0  # embedding actors
    startup_seconds: float = 0.0  # connecting to (or starting) Ray

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"resumed": self.resumed, "workers": self.workers,
                                    "startup_seconds": round(self.startup_seconds, 3)}


def ingest_with_ray(index: ImageIndex, source: str | os.PathLike[str], address: str | None = None,
                    num_cpus: int | None = None, shard_dir: str | os.PathLike[str] | None = None,
                    workers: int | None = None, batch_size: int = BATCH_SIZE,
                    progress: Progress | None = None) -> DistributedReport:
    """Index every image under `source` (a folder, or an fsspec URI such as s3://bucket/photos) on Ray.

    `address` joins a running cluster (HOST:PORT, ray://HOST:PORT or auto); without it a local
    instance with `num_cpus` CPUs is started. `workers` embedding actors (default: one per CPU).
    """
    started = time.perf_counter()
    report = DistributedReport()
    shards = Path(shard_dir) if shard_dir else index.folder / SHARD_FOLDER
    shards.mkdir(parents=True, exist_ok=True)
    report.resumed = merge_leftover_shards(index, shards, report)
    to_embed = _plan(index, str(source), report)
    if to_embed:
        _embed_on_ray(index, to_embed, shards, report, address, num_cpus, workers, batch_size, progress)
    index._finish(report, started)
    return report


# --- listing and planning ---------------------------------------------------------------------
def list_images(source: str) -> list[str]:
    """Image files under a folder or an fsspec URI, in a stable order."""
    if not is_uri(source):
        return [str(path) for path in walk_images(source)]
    import fsspec

    try:
        filesystem, root = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as error:
        raise ValueError(f"cannot read {source}: {error} (install the fsspec backend for this scheme)") from None
    if not filesystem.isdir(root):
        raise NotADirectoryError(f"not a folder: {source}")
    return [filesystem.unstrip_protocol(path) for path in sorted(filesystem.find(root)) if is_image_path(path)]


def is_uri(path: str) -> bool:
    return "://" in path


def _plan(index: ImageIndex, source: str, report: DistributedReport) -> list[str]:
    """What needs embedding; unchanged, renamed and vanished local files are handled as add_folder does."""
    listed = list_images(source)
    if is_uri(source):
        report.unchanged += sum(1 for uri in listed if index.store.record_by_path(uri) is not None)
        return [uri for uri in listed if index.store.record_by_path(uri) is None]
    to_embed = [str(path) for path in index._needing_embedding([Path(p) for p in listed], report, {})]
    seen = {os.path.abspath(p) for p in listed}
    prefix = os.path.join(os.path.abspath(source), "")
    vanished = [r.id for r in index.store.records() if r.path.startswith(prefix) and r.path not in seen]
    report.removed = index.store.remove(vanished)
    index.store.commit()
    return to_embed


# --- Ray ----------------------------------------------------------------------------------------
def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address` or start a local instance; False when Ray was already running."""
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # local workers import this lookalike and share its model cache
        package_parent = str(Path(__file__).resolve().parent.parent)
        python_path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": {"PYTHONPATH": python_path, "LOOKALIKE_CACHE": str(cache_dir())}})
    return True


def check_reachable(address: str) -> None:
    """Fail in seconds, naming the address, instead of waiting for Ray's long connection timeout."""
    if address == "auto":
        return
    host_port = address.removeprefix("ray://").rstrip("/")
    host, _, port = host_port.rpartition(":") if ":" in host_port else (host_port, "", "")
    default = 10001 if address.startswith("ray://") else DEFAULT_RAY_PORT
    try:
        socket.create_connection((host, int(port or default)), timeout=CONNECT_SECONDS).close()
    except (OSError, ValueError) as error:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {error}") from None


def _embed_on_ray(index: ImageIndex, paths: list[str], shards: Path, report: DistributedReport,
                  address: str | None, num_cpus: int | None, workers: int | None, batch_size: int,
                  progress: Progress | None) -> None:
    connecting = time.perf_counter()
    started_here = start_ray(address, num_cpus)
    report.startup_seconds = time.perf_counter() - connecting
    try:
        onnx_path = getattr(index.embedder, "onnx_path", None)
        if onnx_path is not None and not address:
            onnx_path()  # export once here rather than once per local actor
        report.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours counts merged images, not blocks
        dataset = ray.data.from_items([{"path": p} for p in paths],
                                      override_num_blocks=max(1, math.ceil(len(paths) / batch_size)))
        embedded = dataset.map_batches(
            EmbedWorker, batch_size=batch_size, batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=report.workers),
            fn_constructor_kwargs={"model": index.embedder.name,
                                   "version": index.manifest["embedder"]["version"]},
        )  # Ray Data restarts dead actors and retries their batches (its defaults, not overridden here)
        done = 0
        for shard_rows in _shard_sized(embedded.iter_batches(batch_size=None, batch_format="numpy")):
            shard = write_shard(shards, shard_rows)
            merge_shard(index, shard, report)
            done += len(shard_rows["path"])
            if progress:
                progress(done, len(paths))
    finally:
        if started_here:
            ray.shutdown()


def _shard_sized(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """Regroup the actors' batches into shards of about SHARD_ROWS images."""
    pending: list[dict[str, np.ndarray]] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += len(batch["path"])
        if rows >= SHARD_ROWS:
            yield _concatenate(pending)
            pending, rows = [], 0
    if pending:
        yield _concatenate(pending)


def _concatenate(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {column: np.concatenate([b[column] for b in batches]) for column in batches[0]}


class EmbedWorker:
    """One Ray actor: loads the model once, then reads, decodes and embeds batches of files."""

    def __init__(self, model: str, version: str):
        os.environ[THREADS_VARIABLE] = str(max(1, _assigned_cpus()))
        self.embedder = get_embedder(model)
        actual = self.embedder.describe()["version"]
        if actual != version:
            raise RuntimeError(f"this worker has {model} {actual}, the index was built with {version}: "
                               "install the same lookalike and weights on every node")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        with _local_copies(paths) as local:
            return embed_rows(self.embedder, paths, local)


def _assigned_cpus() -> int:
    try:
        return int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    except Exception:  # noqa: BLE001 - outside Ray: one thread per session is the safe budget
        return 1


def embed_rows(embedder: Any, paths: list[str], local: list[Path]) -> dict[str, np.ndarray]:
    """Embed local files (decoded in threads by ingest.embed_files); rows keep the original paths."""
    original = dict(zip(local, paths, strict=True))
    rows: dict[str, dict[str, Any]] = {}
    for batch in embed_files(embedder, local):
        for failure in batch.failures:
            rows[original[failure.path]] = _failure_row(embedder, original[failure.path], failure.reason)
        for image, vector in zip(batch.images, batch.vectors, strict=True):
            rows[original[image.path]] = _image_row(original[image.path], image.path, image.width, image.height,
                                                    vector)
    ordered = [rows[p] for p in paths]
    return {column: np.asarray([row[column] for row in ordered]) for column in ordered[0]} if ordered else {}


def _image_row(path: str, local: Path, width: int, height: int, vector: np.ndarray) -> dict[str, Any]:
    stat = stat_file(local)
    if stat is None:
        return _failure_row(None, path, "file disappeared while indexing", len(vector))
    mtime = stat.mtime if not is_uri(path) else 0.0
    return {"path": path, "content_hash": content_hash(local), "size": stat.size, "mtime": mtime,
            "width": width, "height": height, "vector": np.asarray(vector, dtype=np.float32), "error": ""}


def _failure_row(embedder: Any, path: str, reason: str, dimension: int | None = None) -> dict[str, Any]:
    dimension = dimension or embedder.dimension
    return {"path": path, "content_hash": "", "size": 0, "mtime": 0.0, "width": 0, "height": 0,
            "vector": np.zeros(dimension, dtype=np.float32), "error": reason}


@contextmanager
def _local_copies(paths: list[str]) -> Iterator[list[Path]]:
    """Local paths as they are; fsspec URIs downloaded to a temporary folder for the batch."""
    if not any(is_uri(p) for p in paths):
        yield [Path(p) for p in paths]
        return
    import fsspec

    with tempfile.TemporaryDirectory(prefix="lookalike-") as folder:
        local = []
        for number, path in enumerate(paths):
            target = Path(folder) / f"{number}{Path(path).suffix}"
            try:
                with fsspec.open(path, "rb") as remote:
                    target.write_bytes(remote.read())
            except OSError:
                pass  # the decoder reports the missing file with its reason
            local.append(target)
        yield local


# --- shards ---------------------------------------------------------------------------------------
def write_shard(folder: Path, rows: dict[str, np.ndarray]) -> Path:
    """Rows as a Parquet file that appears complete or not at all."""
    vectors = np.asarray(rows["vector"], dtype=np.float32)
    table = pa.table({
        "path": pa.array([str(p) for p in rows["path"]], pa.string()),
        "content_hash": pa.array([str(h) for h in rows["content_hash"]], pa.string()),
        "size": pa.array(rows["size"], pa.int64()),
        "mtime": pa.array(rows["mtime"], pa.float64()),
        "width": pa.array(rows["width"], pa.int32()),
        "height": pa.array(rows["height"], pa.int32()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
        "error": pa.array([str(e) for e in rows["error"]], pa.string()),
    })
    target = folder / f"shard-{time.time_ns()}-{os.getpid()}.parquet"
    partial = target.with_suffix(".partial")
    pq.write_table(table, partial)
    os.replace(partial, target)
    return target


def read_shard(path: Path) -> tuple[pa.Table, np.ndarray]:
    table = pq.read_table(path)
    column = table["vector"].combine_chunks()
    vectors = column.values.to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size)
    return table, vectors.astype(np.float32, copy=False)


def merge_shard(index: ImageIndex, shard: Path, report: IndexReport, check_files: bool = False) -> int:
    """Add a shard's vectors to the index (update by path), commit, then delete the shard.

    With `check_files` (leftover shards), rows for files changed since are skipped: they are re-planned.
    """
    table, vectors = read_shard(shard)
    if vectors.shape[1] != index.embedder.dimension:
        raise ValueError(f"shard {shard} holds {vectors.shape[1]}-d vectors, the index {index.embedder.dimension}-d")
    merged = 0
    new_images, new_rows = [], []
    for number, row in enumerate(table.to_pylist()):
        if row["error"]:
            report.failures.append(Failure(Path(row["path"]), row["error"]))
            continue
        if check_files and not _unchanged(row):
            continue
        image = NewImage(row["path"] if is_uri(row["path"]) else os.path.abspath(row["path"]), row["content_hash"],
                         row["size"], row["mtime"], row["width"], row["height"])
        known = index.store.record_by_path(image.path)
        if known is None:
            new_images.append(image)
            new_rows.append(number)
        else:
            index.store.replace(known.id, image, vectors[number])
            report.updated += 1
        merged += 1
    index.store.add(new_images, vectors[new_rows])  # one batch: one backend insert, not one per image
    report.added += len(new_images)
    index.store.commit()
    shard.unlink()
    return merged


def merge_leftover_shards(index: ImageIndex, folder: Path, report: IndexReport) -> int:
    """Merge the shards an interrupted run wrote but did not merge; the images they hold."""
    merged = 0
    for partial in folder.glob("shard-*.partial"):
        partial.unlink()  # never completed: its images are simply embedded again
    for shard in sorted(folder.glob("shard-*.parquet")):
        merged += merge_shard(index, shard, report, check_files=True)
    return merged


def _unchanged(row: dict[str, Any]) -> bool:
    if is_uri(row["path"]):
        return True
    stat = stat_file(Path(row["path"]))
    return stat is not None and stat.size == row["size"] and stat.mtime == row["mtime"]
