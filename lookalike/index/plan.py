"""What a new index is made of: its embedder, where its vectors live, its vector index and its reduction and
augmentation. `ImageIndex.create(folder, **fields)` takes these fields by name; the CLI flags and the HTTP body of
a new index are generated from them (lookalike.options), so each is declared here once."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lookalike.embedders import DEFAULT_MODEL, available_models
from lookalike.embedders.pooling import POOLS
from lookalike.embedders.quantized import PRECISIONS
from lookalike.errors import RequestError
from lookalike.index.augmentation import DEFAULT_ALPHA as DEFAULT_DBA_ALPHA
from lookalike.index.augmentation import DEFAULT_NEIGHBOURS as DEFAULT_DBA_NEIGHBOURS
from lookalike.index.autoselect import INDEX_TYPES
from lookalike.options import door
from lookalike.reduction import DEFAULT_COMPONENTS, DEFAULT_MIN_IMAGES

MEMORY_SIZE = r"^[0-9]{0,12}\.?[0-9]{1,12} ?[KMGTkmgt]?([Ii]?[Bb])?$"  # 2G, 1.5GB, 512 MiB: autoselect reads them
MODEL_FIELDS = ("model", "layer", "pool", "weights", "device", "precision")  # the embedder: what every model verb takes
SCALE_FIELDS = ("store", "catalog", "index_type", "max_memory", "latency_ms")
REDUCTION_FIELDS = ("pca", "whiten", "pca_sample", "dba", "dba_alpha")


@dataclass(frozen=True)
class IndexPlan:
    """A new index's plan; None leaves a choice to lookalike (its default)."""

    model: str | None = field(default=None, metadata=door(
        f"the embedder, one of {', '.join(available_models())} (default {DEFAULT_MODEL}; an existing index keeps its "
        "own)", min_length=1))
    layer: str | None = field(default=None, metadata=door(
        "where features are tapped (`lookalike models` lists them)", min_length=1))
    pool: str | None = field(default=None, metadata=door("pooling of convolutional maps (default avg)", choices=POOLS))
    weights: Path | None = field(default=None, metadata=door(
        "local weights file, or checkpoint folder for a CLIP-family model (instead of the packaged, cached or "
        "fetched one)", kind=Path, http=False))  # a file of the machine it runs on: never named over HTTP
    device: str = field(default="cpu", metadata=door("where the network runs", choices=("cpu", "cuda"), http=False))
    precision: str | None = field(default=None, metadata=door(
        "int8: an EfficientNet-Lite model runs quantized (about twice as fast); default: int8 on CPUs with VNNI or "
        "Arm dot product instructions, else float32; an existing index keeps its own", choices=PRECISIONS))
    store: str | None = field(default=None, metadata=door(
        "where a new index keeps its vectors: faiss (default), milvus://HOST:PORT/COLLECTION, or a Milvus Lite file "
        "(path/file.db[/COLLECTION])", http=False))  # a server's files and hosts are the server's to choose
    catalog: str | None = field(default=None, metadata=door(
        "where a new index keeps its catalogue (images, paths, labels, dates, vectors): sqlite (default, a file in the "
        "index folder) or postgresql://USER@HOST:PORT/DATABASE (password in PGPASSWORD or ~/.pgpass), so that several "
        "machines can serve and write one index", http=False))
    index_type: str = field(default="flat-ip", metadata=door(
        "vector index for a new index folder (flat-ip: exact); auto chooses from the number of photos "
        "(expected_count), max_memory and latency_ms", choices=("auto", *INDEX_TYPES)))
    expected_count: int = field(default=0, metadata=door(
        "with index_type auto: the images expected (the CLI counts the folder's photos)", kind=int, minimum=0,
        maximum=10**12, cli=False))
    max_memory: str | None = field(default=None, metadata=door(
        "RAM budget for the vector index, like 2G or 512M (index_type auto)", pattern=MEMORY_SIZE))
    latency_ms: float | None = field(default=None, metadata=door(
        "search latency target for index_type auto, a whole search call (default 2)", kind=float, above=0))
    pca: int | None = field(default=None, metadata=door(
        "reduce vectors to N dimensions with PCA fitted on the indexed vectors once the index holds N images "
        f"(refit with `lookalike pca`). Default: PCA {DEFAULT_COMPONENTS} once the index holds {DEFAULT_MIN_IMAGES} "
        "images; 0: keep the full vectors", kind=int, minimum=0, maximum=65_536, metavar="N"))
    whiten: bool = field(default=False, metadata=door("with pca: whiten (hurts when fitted on few images)", kind=bool))
    pca_sample: int | None = field(default=None, metadata=door(
        "fit the PCA on a random sample of M vectors", kind=int, minimum=1, maximum=10**9, metavar="M"))
    dba: int | None = field(default=None, metadata=door(
        "database-side augmentation: search each image as the blend of itself and its N nearest (default "
        f"{DEFAULT_DBA_NEIGHBOURS}; 0: off; change it later with `lookalike dba`)", kind=int, minimum=0, maximum=1000,
        metavar="N"))
    dba_alpha: float | None = field(default=None, metadata=door(
        f"with dba: neighbours weigh similarity^A (default {DEFAULT_DBA_ALPHA:g})", kind=float, minimum=0,
        maximum=100, metavar="A"))

    @classmethod
    def of(cls, **given: Any) -> IndexPlan:
        """A plan from keywords as any door gives them (None means the default)."""
        known = {item.name for item in fields(cls)}
        unknown = set(given) - known
        if unknown:
            raise TypeError(f"unknown index option {', '.join(sorted(unknown))}; the options are "
                            f"{', '.join(sorted(known))}")
        return cls(**{name: value for name, value in given.items() if value is not None})

    def __post_init__(self) -> None:
        if self.index_type not in ("auto", *INDEX_TYPES):
            raise RequestError(f"index_type must be auto or one of {', '.join(INDEX_TYPES)}, not {self.index_type!r}")
        if self.device not in ("cpu", "cuda"):
            raise RequestError(f"device must be cpu or cuda, not {self.device!r}")
