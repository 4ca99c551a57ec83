"""Indexing on a Ray cluster: workers read, decode and embed; the index merges their shards.

    list + plan (driver, the index's sync run) -> read + decode + embed (a pool of Ray actors, each
    building the index's own embedder) -> Parquet shard (driver, atomic) -> stored by the sync run,
    committed -> delete shard

Planning, storing and finishing are the index's one sync algorithm (`ImageIndex.sync`), so a Ray
run skips, reuses, removes and reduces exactly as `add_folder` does. A shard is written before it is
merged and deleted only after the merge is committed, so a crash at any point loses no finished
shard: the next run merges leftover shards first, then embeds only what the index does not hold yet.
Ray retries a task whose worker died. Without an address a local Ray instance is started; with one
the run joins that cluster (which must have lookalike installed).
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from lookalike.capture import Capture
from lookalike.embedders import Embedder
from lookalike.embedders.spec import EmbedderSpec, ModelMismatchError, check_same_vectors
from lookalike.errors import RequestError
from lookalike.files import content_hash, stat_file, walk_images
from lookalike.images import is_image_path
from lookalike.index import ImageIndex, IndexReport, NewImage, Sync
from lookalike.ingest import Failure, embed_files
from lookalike.settings import cache_dir

SHARD_ROWS = 256  # images per shard: at most this much embedding is redone after a driver crash
BATCH_SIZE = 32  # images per actor call
CONNECT_SECONDS = 5.0
DEFAULT_RAY_PORT = 6379
THREADS_VARIABLE = "LOOKALIKE_ONNX_THREADS"
CAPTURE_FIELDS = {"taken": pa.string(), "taken_source": pa.string(), "camera_make": pa.string(),
                  "camera_model": pa.string(), "latitude": pa.float64(), "longitude": pa.float64()}  # shard columns

Progress = Callable[[int, int], None]


@dataclass
class DistributedReport(IndexReport):
    """An IndexReport plus what the cluster did."""

    resumed: int = 0  # images merged from shards an interrupted run had finished
    workers: int = 0  # embedding actors
    startup_seconds: float = 0.0  # connecting to (or starting) Ray

    @classmethod
    def of(cls, report: IndexReport, resumed: int, cluster: Cluster) -> DistributedReport:
        """The sync run's report with the cluster's part added."""
        counts = {f.name: getattr(report, f.name) for f in fields(IndexReport)}
        return cls(**counts, resumed=resumed, workers=cluster.workers, startup_seconds=cluster.startup_seconds)

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"resumed": self.resumed, "workers": self.workers,
                                    "startup_seconds": round(self.startup_seconds, 3)}


@dataclass
class Cluster:
    """What embedding on Ray took: the actors, and the time to reach (or start) Ray."""

    workers: int = 0
    startup_seconds: float = 0.0


def ingest_with_ray(index: ImageIndex, source: str | os.PathLike[str], ray: str | None = None,
                    ray_cpus: int | None = None, shard_dir: str | os.PathLike[str] | None = None,
                    workers: int | None = None, batch_size: int = BATCH_SIZE,
                    progress: Progress | None = None) -> DistributedReport:
    """Index every image under `source` (a folder, or an fsspec URI such as s3://bucket/photos) on Ray.

    `ray` is the cluster to join (HOST:PORT, ray://HOST:PORT or auto); None or '' starts a local
    instance with `ray_cpus` CPUs. `workers` embedding actors (default: one per CPU).
    """
    listed = list_images(str(source))
    index.expect(len(listed))  # an 'auto' index type is chosen for this many images, as add_folder does
    run = index.sync()
    shards = Path(shard_dir) if shard_dir else index.files.ray_shards
    shards.mkdir(parents=True, exist_ok=True)
    dimension = index.embedder.dimension
    resumed = merge_leftover_shards(run, shards, dimension)
    to_embed = plan(run, str(source), listed)
    cluster = Cluster()
    if to_embed:
        cluster = _embed_on_ray(index, run, to_embed, shards, ray or None, ray_cpus, workers, batch_size, progress)
    return DistributedReport.of(run.finish(), resumed, cluster)


# --- listing and planning ---------------------------------------------------------------------
def list_images(source: str) -> list[str]:
    """Image files under a folder or an fsspec URI, in a stable order."""
    if not is_uri(source):
        return [str(path) for path in walk_images(source)]
    import fsspec

    try:
        filesystem, root = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as error:
        raise RequestError(f"cannot read {source}: {error} (install the fsspec backend for this scheme)") from None
    if not filesystem.isdir(root):
        raise NotADirectoryError(f"not a folder: {source}")
    return [filesystem.unstrip_protocol(path) for path in sorted(filesystem.find(root)) if is_image_path(path)]


def is_uri(path: str) -> bool:
    return "://" in path


def plan(run: Sync, source: str, listed: list[str]) -> list[str]:
    """What needs embedding of the `listed` files under `source`; local files are planned as add_folder
    plans them (unchanged skipped, moved or copied stored with their vector, vanished removed), URIs by name.
    Workers hash the files they embed, so planning does not keep the hashes it computed."""
    if is_uri(source):
        return run.plan_uris(listed)
    to_embed = [str(path) for path in run.plan((Path(p) for p in listed), remember_hashes=False)]
    run.remove_vanished(source, listed)
    run.commit()  # what planning settled survives a crash of the long embedding run
    return to_embed


# --- Ray ----------------------------------------------------------------------------------------
def start_ray(address: str | None = None, ray_cpus: int | None = None) -> bool:
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
        ray.init(num_cpus=ray_cpus, include_dashboard=False, log_to_driver=True,
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


def _embed_on_ray(index: ImageIndex, run: Sync, paths: list[str], shards: Path, address: str | None,
                  ray_cpus: int | None, workers: int | None, batch_size: int, progress: Progress | None) -> Cluster:
    """Embed `paths` on a pool of actors, merging their rows into the index one shard at a time."""
    connecting = time.perf_counter()
    started_here = start_ray(address, ray_cpus)
    cluster = Cluster(startup_seconds=time.perf_counter() - connecting)
    try:
        onnx_path = getattr(index.embedder, "onnx_path", None)
        if onnx_path is not None and not address:
            onnx_path()  # export once here rather than once per local actor
        cluster.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        done = 0
        batches = _embedded_batches(index, paths, cluster.workers, batch_size)
        for shard_rows in _shard_sized(batches):
            merge_shard(run, write_shard(shards, shard_rows), index.embedder.dimension)
            done += len(shard_rows["path"])
            if progress:
                progress(done, len(paths))
    except ray.exceptions.RayActorError as error:
        raise _refusal(error) from None
    finally:
        if started_here:
            ray.shutdown()
    return cluster


def _refusal(error: ray.exceptions.RayActorError) -> Exception:
    """A worker that refused the index's embedder, as the ModelMismatchError it raised (Ray passes it on as
    text inside its own error); any other actor failure as it is."""
    marker = f"{ModelMismatchError.__module__}.{ModelMismatchError.__qualname__}: "
    text = str(error)
    if error.actor_init_failed and marker in text:
        return ModelMismatchError(text.rsplit(marker, 1)[1].strip())
    return error


def _embedded_batches(index: ImageIndex, paths: list[str], workers: int,
                      batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Rows (see `embed_rows`) from `workers` actors, each building the index's own embedder."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts merged images, not blocks
    dataset = ray.data.from_items([{"path": p} for p in paths],
                                  override_num_blocks=max(1, math.ceil(len(paths) / batch_size)))
    embedded = dataset.map_batches(
        EmbedWorker, batch_size=batch_size, batch_format="numpy", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_kwargs={"spec": index.embedder_spec(), "description": index.manifest.embedder},
    )  # Ray Data restarts dead actors and retries their batches (its defaults, not overridden here)
    return embedded.iter_batches(batch_size=None, batch_format="numpy")


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
    """One Ray actor: builds the index's embedder once, then reads, decodes and embeds batches of files."""

    def __init__(self, spec: EmbedderSpec, description: dict[str, Any]):
        os.environ[THREADS_VARIABLE] = str(max(1, _assigned_cpus()))
        self.embedder = worker_embedder(spec, description)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        with _local_copies(paths) as local:
            return embed_rows(self.embedder, paths, local)


def worker_embedder(spec: EmbedderSpec, description: dict[str, Any]) -> Embedder:
    """The index's embedder built on this node, refused unless it makes exactly the index's vectors."""
    embedder = spec.build()
    try:
        check_same_vectors(description, embedder.describe(), whose=f"the Ray worker on {socket.gethostname()}")
    except ModelMismatchError as error:
        raise ModelMismatchError(f"{error}: install the same lookalike, weights and model options on every "
                                 "node") from None
    return embedder


def _assigned_cpus() -> int:
    """The CPUs Ray gave this actor; 1 outside Ray (asking the runtime context there would start Ray)."""
    if not ray.is_initialized():
        return 1
    try:
        return int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    except Exception:  # noqa: BLE001 - no assignment to read: one thread per session is the safe budget
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
                                                    vector, image.capture)
    ordered = [rows[p] for p in paths]
    return {column: np.asarray([row[column] for row in ordered]) for column in ordered[0]} if ordered else {}


def _image_row(path: str, local: Path, width: int, height: int, vector: np.ndarray,
               capture: Capture) -> dict[str, Any]:
    stat = stat_file(local)
    if stat is None:
        return _failure_row(None, path, "file disappeared while indexing", len(vector))
    mtime = stat.mtime if not is_uri(path) else 0.0
    return {"path": path, "content_hash": content_hash(local), "size": stat.size, "mtime": mtime,
            "width": width, "height": height, "vector": np.asarray(vector, dtype=np.float32), "error": ""} | {
            name: getattr(capture, name) for name in CAPTURE_FIELDS}


def _failure_row(embedder: Any, path: str, reason: str, dimension: int | None = None) -> dict[str, Any]:
    dimension = dimension or embedder.dimension
    return {"path": path, "content_hash": "", "size": 0, "mtime": 0.0, "width": 0, "height": 0,
            "vector": np.zeros(dimension, dtype=np.float32), "error": reason} | dict.fromkeys(CAPTURE_FIELDS)


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
    } | {name: _capture_column(rows.get(name, [None] * len(rows["path"])), kind)  # rows of no capture: None
         for name, kind in CAPTURE_FIELDS.items()})
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


def _capture_column(values: Any, kind: pa.DataType) -> pa.Array:
    """A capture column of a shard: Ray Data hands a batch's column of only None back as NaN, so anything that is
    not a string (text columns) or is NaN (numbers) is None."""
    if kind == pa.string():
        return pa.array([v if isinstance(v, str) else None for v in values], kind)
    return pa.array([None if v is None or v != v else float(v) for v in values], kind)


def merge_shard(run: Sync, shard: Path, dimension: int, check_files: bool = False) -> int:
    """Store a shard's vectors in the index (add, or replace by path), commit, then delete the shard.

    With `check_files` (leftover shards), rows for files changed since are skipped: they are re-planned.
    """
    table, vectors = read_shard(shard)
    if vectors.shape[1] != dimension:
        raise ValueError(f"shard {shard} holds {vectors.shape[1]}-d vectors, the index {dimension}-d")
    images, rows = [], []
    for number, row in enumerate(table.to_pylist()):
        if row["error"]:
            run.fail([Failure(Path(row["path"]), row["error"])])
        elif not check_files or _unchanged(row):
            images.append(NewImage(row["path"] if is_uri(row["path"]) else os.path.abspath(row["path"]),
                                   row["content_hash"], row["size"], row["mtime"], row["width"], row["height"],
                                   Capture(**{name: row.get(name) for name in CAPTURE_FIELDS})))  # older: none
            rows.append(number)
    run.store_images(images, vectors[rows])  # one batch: one backend insert, not one per image
    run.commit()
    shard.unlink()
    return len(images)


def merge_leftover_shards(run: Sync, folder: Path, dimension: int) -> int:
    """Merge the shards an interrupted run wrote but did not merge; the images they hold."""
    merged = 0
    for partial in folder.glob("shard-*.partial"):
        partial.unlink()  # never completed: its images are simply embedded again
    for shard in sorted(folder.glob("shard-*.parquet")):
        try:
            merged += merge_shard(run, shard, dimension, check_files=True)
        except (ValueError, OSError, pa.ArrowException) as error:
            # not this index's vectors (another model or layer) or unreadable: its images are embedded again
            run.fail([Failure(shard, f"leftover shard discarded: {error}")])
            shard.unlink(missing_ok=True)
    return merged


def _unchanged(row: dict[str, Any]) -> bool:
    if is_uri(row["path"]):
        return True
    stat = stat_file(Path(row["path"]))
    return stat is not None and stat.size == row["size"] and stat.mtime == row["mtime"]
