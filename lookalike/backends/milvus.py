"""Vectors in Milvus: a server or cluster (`milvus://HOST:PORT/COLLECTION`) or a Milvus Lite file
(`milvus-lite:///path/file.db/COLLECTION`, or simply `path/file.db`).

Like FAISS, the collection is a searchable copy: SQLite (store.py) stays the source of truth and
the collection is rebuilt from it when it is stale. A collection belongs to one model: its
properties record the model and the dimension, and a collection made by another is refused.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from lookalike.backends.base import Ids, Matrix
from lookalike.backends.filters import Described, Filter
from lookalike.backends.milvus_filter import LABELS_FIELD, PAIRS_FIELD, PATH_FIELD, add_fields, can_express, scalars
from lookalike.backends.milvus_filter import expression as filter_expression
from lookalike.errors import RequestError

DEFAULT_COLLECTION = "lookalike"
DEFAULT_PORT = 19530
EXACT_INDEX = "FLAT"
# Milvus Lite accepts any index type name and silently searches by brute force, so only the
# types it really builds are allowed there.
LITE_INDEX_TYPES = ("FLAT", "IVF_FLAT")
SERVER_INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN", "SCANN", "AUTOINDEX")
INDEX_PARAMETERS = {"IVF_FLAT": {"nlist": 1024}, "IVF_SQ8": {"nlist": 1024}, "IVF_PQ": {"nlist": 1024, "m": 32},
                    "HNSW": {"M": 16, "efConstruction": 200}}
SEARCH_PARAMETERS = {"IVF_FLAT": {"nprobe": 32}, "IVF_SQ8": {"nprobe": 32}, "IVF_PQ": {"nprobe": 32},
                     "HNSW": {"ef": 128}}
MAX_TOP_K = 16384  # Milvus' limit on k per query
INSERT_ROWS = 2048  # rows per insert request (about 10 MB of 1280-d vectors)
CONNECT_SECONDS = 5.0
SEARCH_SECONDS = 10.0  # a search that a server has not answered by then is reported, not waited on
WRITE_SECONDS = 60.0  # inserting INSERT_ROWS rows, flushing, loading, creating a collection
NOT_LOADED = "not loaded"  # a restarted server has the collection but has not loaded it for search yet
STAMP = "milvus-generation.json"
OWNER_PROPERTY = "lookalike.model"
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_clients: dict[str, Any] = {}


@dataclass(frozen=True)
class MilvusLocation:
    """Where a collection lives: `uri` is what MilvusClient connects to (http://HOST:PORT or a .db file)."""

    uri: str
    collection: str
    index_type: str = EXACT_INDEX

    @property
    def lite(self) -> bool:
        return not self.uri.startswith("http")

    def __str__(self) -> str:
        query = "" if self.index_type == EXACT_INDEX else f"?index={self.index_type}"
        if self.lite:
            return f"milvus-lite://{self.uri}/{self.collection}{query}"
        return f"milvus://{self.uri.removeprefix('http://')}/{self.collection}{query}"


def is_milvus_store(store: str) -> bool:
    return store.startswith(("milvus://", "milvus-lite://")) or ".db" in store


def parse_store(store: str) -> MilvusLocation:
    """A store string as a location, with the index type checked (Milvus Lite would accept anything)."""
    parts = urlsplit(store)
    options = parse_qs(parts.query)
    index_type = options.pop("index", [EXACT_INDEX])[0].upper()
    if options:
        raise RequestError(f"unknown store option(s) {', '.join(options)} in {store!r}; only ?index=TYPE is known")
    if parts.scheme == "milvus":
        if not parts.hostname:
            raise RequestError(f"no host in {store!r}; expected milvus://HOST:PORT/COLLECTION")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise RequestError(f"bad port in {store!r}; expected milvus://HOST:PORT/COLLECTION") from None
        location = MilvusLocation(f"http://{parts.hostname}:{port}", _collection(parts.path.strip("/"), store),
                                  index_type)
    else:
        path = parts.path if parts.scheme == "milvus-lite" else store.split("?")[0]
        location = _lite_location(path, store, index_type)
    allowed = LITE_INDEX_TYPES if location.lite else SERVER_INDEX_TYPES
    if index_type not in allowed:
        where = "Milvus Lite" if location.lite else "Milvus"
        raise RequestError(f"index type {index_type!r} is not supported by {where}; choose one of {', '.join(allowed)}")
    return location


def _lite_location(path: str, store: str, index_type: str) -> MilvusLocation:
    database, _, collection = path.partition(".db")
    if not _:
        raise RequestError(f"a Milvus Lite store is a .db file: {store!r}")
    database = os.path.abspath(database + ".db")
    if not Path(database).parent.is_dir():
        raise FileNotFoundError(f"folder for the Milvus Lite file does not exist: {Path(database).parent}")
    return MilvusLocation(database, _collection(collection.strip("/"), store), index_type)


def _collection(name: str, store: str) -> str:
    name = name or DEFAULT_COLLECTION
    if not _COLLECTION_NAME.match(name):
        raise RequestError(f"bad Milvus collection name {name!r} in {store!r}: letters, digits and _ only, "
                         "not starting with a digit")
    return name


def connect(location: MilvusLocation) -> Any:
    """A client for the location, failing fast (with the address) when a server does not answer."""
    if location.uri in _clients:
        return _clients[location.uri]
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise RequestError("a Milvus store needs pymilvus (and milvus-lite for .db files): "
                         "pip install 'lookalike[distributed]'") from None
    if not location.lite:
        check_reachable(location)
    from pymilvus.exceptions import MilvusException

    try:
        client = MilvusClient(uri=location.uri, timeout=30)
    except MilvusException as error:
        where = "the Milvus Lite file" if location.lite else "the Milvus server at"
        hint = " (one process at a time can open a Milvus Lite file: is another one using it?)" if location.lite else ""
        raise ConnectionError(f"cannot use {where} {location.uri.removeprefix('http://')}: {error.message}{hint}") \
            from None
    _clients[location.uri] = client
    return client


def check_reachable(location: MilvusLocation) -> None:
    """Fail in seconds, naming the address, when nothing accepts connections there."""
    address = location.uri.removeprefix("http://")
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach the Milvus server at {address}: {error}") from None


class MilvusBackend:
    """Inner-product search in one Milvus collection; ids are the SQLite image ids. Beside each vector the
    collection keeps the image's path and labels (milvus_filter.py), so `where` and `path_prefix` filter inside
    Milvus; `describe` (set by the store that owns the rows) says what they are for the ids being added.

    A collection made before the labels were kept also as `label_pairs` (an ARRAY field) is used as it is, its label
    filter reading the JSON labels (5.8x an unfiltered search for ten values at 1M rows, where the pairs cost about
    what an unfiltered search does: benchmarks/milvus_filters.py); `lookalike compact` (ImageIndex.compact) makes it
    again with the pairs."""

    kind = "milvus"
    shared = True  # every process using the index writes this one collection: another's commit is already here
    describe: Callable[[Sequence[int]], list[Described]] | None = None

    def __init__(self, dimension: int, location: str, owner: str = "", client: Any = None):
        """A fresh, empty collection (an existing one made by this model is emptied, another is refused)."""
        self.dimension = dimension
        self.location = parse_store(location)
        self.owner = owner
        self.client = client or connect(self.location)
        self.collection = self.location.collection
        self._count: int | None = None
        self.pairs = False  # the collection keeps label_pairs (else a label filter reads the JSON labels)
        self.relabelled: set[int] = set()  # ids whose labels the open write changed (described again at commit)
        if client is None:
            self._create()

    def _call(self, method: str, *args: Any, seconds: float = WRITE_SECONDS, **kwargs: Any) -> Any:
        """One request to Milvus, bounded by `seconds`. A server that is down or does not answer in time
        is a ConnectionError naming its address; a collection a restarted server has not loaded yet is
        loaded, and the request asked again."""
        import grpc
        from pymilvus.exceptions import MilvusException

        try:
            return getattr(self.client, method)(*args, timeout=seconds, **kwargs)
        except (MilvusException, grpc.RpcError) as error:
            message = str(error.message if isinstance(error, MilvusException) else error.details())
            if NOT_LOADED in message and method != "load_collection":
                self._call("load_collection", self.collection)
                return getattr(self.client, method)(*args, timeout=seconds, **kwargs)
            if self.location.lite:
                raise
            check_reachable(self.location)  # raises, naming the address, when the server is gone
            if isinstance(error, grpc.RpcError) or "deadline" in message.lower() or "timeout" in message.lower():
                raise ConnectionError(f"the Milvus server at {self.location.uri.removeprefix('http://')} did not "
                                      f"answer {method} in {seconds:.0f} s: {message}") from None
            raise

    # --- the collection ---------------------------------------------------------------------
    def _create(self) -> None:
        if self._call("has_collection", self.collection):
            self.check_owner()
            self._call("drop_collection", self.collection)
        schema = self._schema()
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.location.index_type, metric_type="IP",
                        params=INDEX_PARAMETERS.get(self.location.index_type, {}))
        self._call("create_collection", self.collection, schema=schema, index_params=index,
                   consistency_level="Strong", properties={OWNER_PROPERTY: self.owner})
        built = self._call("describe_index", self.collection, "vector").get("index_type")
        if built != self.location.index_type:
            raise ValueError(f"Milvus built a {built} index instead of {self.location.index_type} in {self.location}")
        self.pairs = PAIRS_FIELD in {field.name for field in schema.fields}
        self._count = 0

    def _schema(self) -> Any:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        add_fields(schema)
        return schema

    def check_owner(self) -> set[str]:
        """Refuse a collection made for another model or dimension; the names of its fields."""
        described = self._call("describe_collection", self.collection)
        vector = next((f for f in described["fields"] if f["name"] == "vector"), None)
        dimension = int(vector["params"].get("dim", 0)) if vector else None
        owner = described.get("properties", {}).get(OWNER_PROPERTY)
        if dimension != self.dimension or owner is None or (self.owner and owner != self.owner):
            made_by = f"{owner or 'not lookalike'}, {dimension} dimensions"
            raise RequestError(f"Milvus collection {self.collection!r} at {self.location} was made by another model "
                             f"({made_by}); this index needs {self.owner or 'its model'}, {self.dimension} "
                             "dimensions: choose another collection")
        return {f["name"] for f in described["fields"]}

    def refresh(self, dimension: int) -> None:
        """Another process wrote the collection (and may have rebuilt it reduced to `dimension`): count again."""
        self.dimension = dimension
        self._count = None

    # --- the VectorBackend protocol -----------------------------------------------------------
    @property
    def count(self) -> int:
        if self._count is None:
            self._count = self._count_rows(SEARCH_SECONDS)
        return self._count

    def _count_rows(self, seconds: float) -> int:
        rows = self._call("query", self.collection, filter="", output_fields=["count(*)"], seconds=seconds)
        return int(rows[0]["count(*)"])

    def add(self, ids: Ids, vectors: Matrix) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(ids), INSERT_ROWS):
            self._call("insert", self.collection, self._rows(ids[start:start + INSERT_ROWS],
                                                             vectors[start:start + INSERT_ROWS]))
        if self._count is not None:
            self._count += len(ids)

    def _rows(self, ids: Ids, vectors: Matrix) -> list[dict[str, Any]]:
        described = self.describe([int(i) for i in ids]) if self.describe else [Described()] * len(ids)
        return [{"id": int(i), "vector": v, **scalars(int(i), d, self.pairs)}
                for i, v, d in zip(ids, vectors, described, strict=True)]

    def describe_again(self, ids: Sequence[int]) -> None:
        """Rewrite the path and labels kept beside these ids' vectors (their labels changed); ids not in the
        collection are left out."""
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), INSERT_ROWS):
            chunk = ids[start:start + INSERT_ROWS]
            kept = self._call("query", self.collection, filter=f"id in [{','.join(map(str, chunk))}]",
                              output_fields=["id", "vector"])
            if kept:
                vectors = np.asarray([row["vector"] for row in kept], dtype=np.float32)
                self._call("upsert", self.collection, self._rows(np.asarray([row["id"] for row in kept]), vectors))

    def compact(self) -> None:
        """Make a collection of an earlier schema (without label_pairs) again with today's fields: its vectors are
        copied into a new collection, which then takes its name (a crash between the drop and the rename leaves no
        collection of that name, and the next open rebuilds it from the rows). A collection made today is left as
        it is: Milvus drops deleted rows by itself."""
        if self.pairs:
            return
        final = self.collection
        rows = self._call("query_iterator", final, batch_size=INSERT_ROWS, output_fields=["id", "vector"])
        self.collection = f"{final}__with_label_pairs"
        try:
            self._create()
            while batch := rows.next():
                self.add(np.asarray([row["id"] for row in batch], dtype=np.int64),
                         np.asarray([row["vector"] for row in batch], dtype=np.float32))
            rows.close()
            self._call("flush", self.collection)
            self._call("drop_collection", final)
            self._call("rename_collection", self.collection, final)
        except BaseException:
            self.pairs = False  # the old collection is still there, or gone and made anew by the next open
            raise
        finally:
            self.collection, self._count = final, None
        self._call("load_collection", final)

    def can_filter(self, narrowed: Filter) -> bool:
        """Whether this search can filter inside Milvus: the store describes the rows and every condition has a
        clause (else the store passes the ids it allows). Milvus Lite reads a JSON or ARRAY field row by row, a label
        filter 3.5 s (JSON) or 2.6 s (label_pairs) at 100k rows where the ids it allows cost 0.06-0.12 s
        (benchmarks/milvus_filters.py): there, labels go as ids and only a path prefix runs inside."""
        if self.location.lite and narrowed.where:
            return False
        return self.describe is not None and can_express(narrowed)

    def remove(self, ids: Ids) -> None:
        if len(ids):
            self._call("delete", self.collection, ids=[int(i) for i in ids])
            self._count = None  # ids that were not there are not counted: ask again

    def search(self, queries: Matrix, k: int, allowed_ids: Ids | Filter | None = None) -> tuple[Matrix, Ids]:
        """Top-k per query within `allowed_ids`: ids, or a Filter this backend said it can apply (can_filter)."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        scores = np.full((len(queries), k), np.finfo(np.float32).min, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        if isinstance(allowed_ids, Filter):
            expression = filter_expression(allowed_ids, self.pairs)
        elif allowed_ids is not None and len(allowed_ids) == 0:
            return scores, found
        else:
            expression = "" if allowed_ids is None else f"id in [{','.join(str(int(i)) for i in allowed_ids)}]"
        params = {"metric_type": "IP", "params": SEARCH_PARAMETERS.get(self.location.index_type, {})}
        hits = self._call("search", self.collection, data=list(queries), limit=min(k, MAX_TOP_K), filter=expression,
                          search_params=params, output_fields=["id"], seconds=SEARCH_SECONDS)
        for row, matches in enumerate(hits):
            for rank, match in enumerate(matches):
                found[row, rank] = int(match["id"])
                scores[row, rank] = float(match["distance"])
        return scores, found

    def save(self, folder: Path, generation: int) -> None:
        """Flush the collection, then record which database generation it holds."""
        self._call("flush", self.collection)
        stamp = {"generation": generation, "store": str(self.location), "collection": self.collection,
                 "folder": os.path.abspath(folder)}  # the paths kept beside the vectors are absolute
        partial = Path(folder) / (STAMP + ".partial")
        partial.write_text(json.dumps(stamp))
        os.replace(partial, Path(folder) / STAMP)

    @classmethod
    def load(cls, folder: Path, generation: int, dimension: int, location: str,
             owner: str = "") -> MilvusBackend | None:
        """The collection when it holds this generation; None (rebuild) when it is missing or stale."""
        try:
            stamp = json.loads((Path(folder) / STAMP).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        parsed = parse_store(location)
        client = connect(parsed)
        if (stamp.get("generation") != generation or stamp.get("store") != str(parsed)
                or stamp.get("folder") != os.path.abspath(folder)):  # a moved folder: its paths are rewritten
            return None
        backend = cls(dimension, location, owner, client=client)
        if not backend._call("has_collection", parsed.collection):
            return None
        fields = backend.check_owner()
        if not {PATH_FIELD, LABELS_FIELD} <= fields:
            return None  # made before the collection kept paths and labels: rebuilt with them
        backend.pairs = PAIRS_FIELD in fields  # made before it kept label_pairs: filtered by the JSON labels
        backend._call("load_collection", parsed.collection)  # a reopened collection is "released" until loaded
        # A restarted server answers its first consistent read only once it has caught up with what was written
        # before (24 s after a restart here): that wait belongs to opening the index, not to its first search.
        backend._count = backend._count_rows(WRITE_SECONDS)
        return backend
