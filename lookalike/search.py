"""One query, one set of search options, one result: the same names in Python, the CLI and HTTP.

A `Query` is one of: an image (path or bytes), an indexed id, a random indexed image, or a vector; and/or
words (`text`, for a model with a text tower). `SearchOptions` holds everything else (k, method, min_score,
where, path_prefix, by_class, class_confidence, by_cluster, and expand with its neighbours and alpha) and is
checked here, once, whichever door the request came in by.

Side features plug into the one search through two registries instead of being separate searches:
- a *scope* narrows the search to label values chosen from the query's vector (classify-then-search
  is the `by_class` scope, cluster-then-search the `by_cluster` scope; see lookalike.organise);
- a *learned method* ranks candidates with a trained similarity model (see lookalike.similarity).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lookalike.capture_filter import TAKEN, CaptureFilter, is_taken_term, split_capture
from lookalike.cutoff import AUTO, AUTO_CAP, is_auto
from lookalike.errors import RequestError
from lookalike.expansion import DEFAULT_ALPHA as DEFAULT_EXPAND_ALPHA
from lookalike.expansion import DEFAULT_EXPANSION, EXPANSIONS, EXPLANATIONS, Expansion
from lookalike.expansion import DEFAULT_NEIGHBOURS as DEFAULT_EXPAND_NEIGHBOURS
from lookalike.options import door

SCOPE = {"scope": True}  # marks a SearchOptions field that a registered scope answers (see register_scope)
METRICS = ("cosine", "euclidean")  # the methods every index has; learned ones are added by training
DEFAULT_CLASS_CONFIDENCE = 0.8  # cumulative class probability by_class widens to (up to by_class classes)
DEFAULT_NEGATIVE_WEIGHT = 0.25  # Rocchio's beta: how far the mean of the negative examples is taken away; the best
# of 0.1-1 for "less like" a wrong match on clothing, near it on Corel-1K (benchmarks/region_query.py)
CROP_PATTERN = r"^\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*$"
Vector = npt.NDArray[np.float32]
Where = dict[str, tuple[str, ...]]
WhereTerms = Mapping[str, str | Sequence[str]] | Iterable[str]  # what `where` is given as (see parse_where)
SORTS = ("taken", "-taken")  # oldest or newest first
Example = str | os.PathLike[str] | bytes | int  # one example image: a file, its bytes or an indexed id
QUERY_MORE = frozenset({"crop", "examples", "more_id", "negative", "not_id", "not_text", "negative_weight"})  # Query
# fields ImageIndex.search takes by name among the options
Index = Any  # an ImageIndex, typed loosely here: lookalike.index imports this module, not the other way round


@dataclass(frozen=True)
class Match:
    """One indexed image found. `score` ranks (it includes re-ranking); `similarity` is the plain cosine of query
    and image in the index's space (1.0 for the same photo); `same_photo` from lookalike.confidence.SAME_PHOTO up."""

    id: int
    path: str
    score: float
    labels: dict[str, str] = field(default_factory=dict)
    similarity: float | None = None
    same_photo: bool = False
    taken: str | None = None  # when the photo was taken (YYYY-MM-DDTHH:MM:SS), see lookalike.capture
    taken_source: str | None = None  # "exif" (its DateTimeOriginal) or "file" (the file's modification time)
    camera: str | None = None  # make and model, from its EXIF
    latitude: float | None = None  # where, from its EXIF GPS position
    longitude: float | None = None


@dataclass
class SearchResult:
    """The matches, best first, and where the time went (milliseconds)."""

    matches: list[Match]
    query: str
    method: str
    timings: dict[str, float] = field(default_factory=dict)
    predicted_class: dict[str, float] | None = None
    query_id: int | None = None  # the indexed image the query was, when it was one
    low_confidence: bool = False  # the best match is not close (see lookalike.confidence)
    note: str | None = None  # one line on how far to trust the answer (None: nothing to say)

    def to_dict(self) -> dict[str, object]:
        """The result as JSON (the CLI's --json and the HTTP answer): every field by its name (timings as
        timings_ms), numbers rounded to what they can tell."""
        return shaped(self)


JSON_NAMES = {"timings": "timings_ms"}  # a field's name in JSON, where it says its unit


PLAIN = frozenset({str, int, bool, type(None)})  # types JSON takes as they are (not their subclasses: shaped decides)


def shaped(value: Any) -> Any:
    """A result dataclass (and what it holds) as JSON-ready values, field by field; a plain value (PLAIN) is kept
    without a call (most of a match's fields: 80 -> 50 us for 10 matches)."""
    if isinstance(value, float | np.floating):
        return round(float(value), 6)
    if isinstance(value, str | int | bool | None):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {json: item if type(item := getattr(value, name)) in PLAIN else shaped(item)
                for name, json in _json_fields(type(value))}
    if isinstance(value, dict):
        return {key: item if type(item) in PLAIN else shaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shaped(item) for item in value]
    return value


@functools.cache
def _json_fields(kind: type) -> tuple[tuple[str, str], ...]:
    """A dataclass's field names and their JSON names, looked up once per class (10 matches a search)."""
    return tuple((item.name, JSON_NAMES.get(item.name, item.name)) for item in fields(kind))


# --- the query --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """What to search from: exactly one of image, id, random or vector; or `text` (words, for an index whose
    model has a text tower), alone or with one of those. A mixed query ("this photo, but red") searches from
    the weighted sum of the two unit vectors: `text_weight` for the words, 1 - text_weight for the rest.

    `crop` (x, y, width, height in pixels of the upright photo) searches from that box of the image, the indexed
    id's file or the random one's. Several examples: `examples` are more images like the one asked for (a list given
    as `image` or `id` is split into the first and these; `more_id` adds indexed ones to any query), `negative` /
    `not_id` / `not_text` the ones the results should be unlike; they are searched as the normalised mean of the
    positives less `negative_weight` times the mean of the negatives (Rocchio), and every example's id is left out
    of the results."""

    image: str | os.PathLike[str] | bytes | None = None  # the CLI's positional QUERY_IMAGE, HTTP's upload
    id: int | Sequence[int] | None = field(default=None, metadata=door(
        "query by an indexed image id (repeat: several examples)", kind=int, minimum=0, repeat=True))
    random: bool = field(default=False, metadata=door("query by a random indexed image", kind=bool))
    seed: int | None = field(default=None, metadata=door("with random: the same seed picks the same image", kind=int))
    vector: Vector | None = None
    model: dict[str, Any] | None = None  # with vector: the description of the embedder that made it
    text: str | None = field(default=None, metadata=door(
        "search by words (an index of a CLIP-family model, see `lookalike models`); with an image, id or random: "
        "that one, changed by the words", min_length=1, pattern=r"\S"))
    text_weight: float = field(default=0.5, metadata=door(
        "with text and another query: the words' share of the mixed query, 0 to 1", kind=float, minimum=0,
        maximum=1))
    crop: tuple[int, int, int, int] | str | None = field(default=None, metadata=door(
        "search from this box of the query image (the image, the id's or the random one's), in pixels of the "
        "upright photo", pattern=CROP_PATTERN, metavar="X,Y,W,H"))
    examples: tuple[Example, ...] = ()  # more images like the query (files, bytes or indexed ids)
    negative: tuple[Example, ...] = field(default=(), metadata=door(
        "an image file the results should be unlike (repeat for more)", repeat=True, short="--not", http=False,
        metavar="IMAGE"))
    more_id: tuple[int, ...] = field(default=(), metadata=door(
        "an indexed image the results should be like too, with any query (repeat for more)", kind=int, repeat=True,
        minimum=0))
    not_id: tuple[int, ...] = field(default=(), metadata=door(
        "an indexed image the results should be unlike (repeat for more)", kind=int, repeat=True, minimum=0))
    not_text: tuple[str, ...] = field(default=(), metadata=door(
        "words the results should be unlike (a CLIP-family index; repeat for more)", repeat=True, min_length=1,
        pattern=r"\S"))
    negative_weight: float = field(default=DEFAULT_NEGATIVE_WEIGHT, metadata=door(
        "with negative examples: how far from their mean the query is moved (Rocchio's beta), 0 to 2", kind=float,
        minimum=0, maximum=2))

    def __post_init__(self) -> None:
        self._split_examples()
        given = sum([self.image is not None, self.id is not None, self.random, self.vector is not None])
        if given > 1 or (given == 0 and self.text is None):
            raise RequestError("give exactly one query: an image (path or bytes), an indexed id, random, or a vector "
                             "(text may stand alone or go with one of them)")
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise RequestError(f"text is the words to search by, not {self.text!r}")
        weight = self.text_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 <= weight <= 1.0:
            raise RequestError(f"text_weight is the words' share of a mixed query, from 0 to 1, not {weight!r}")
        self._check_crop()
        beta = self.negative_weight
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0.0 <= beta <= 2.0:
            raise RequestError(f"negative_weight is how far the query moves from the negatives, 0 to 2, not {beta!r}")

    def _split_examples(self) -> None:
        """A list given as image or id: its first is the query, the rest more examples; single negatives as lists."""
        for name in ("image", "id"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                if not value:
                    object.__setattr__(self, name, None)
                    continue
                first = Query.of(value[0])
                object.__setattr__(self, name, None)
                object.__setattr__(self, "image" if first.image is not None else "id",
                                   first.image if first.image is not None else first.id)
                object.__setattr__(self, "examples", (*value[1:], *self.examples))
        for name in ("examples", "more_id", "negative", "not_id", "not_text"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str | bytes | int | os.PathLike)
                               else tuple(value or ()))
        object.__setattr__(self, "examples", (*self.examples, *self.more_id))
        object.__setattr__(self, "more_id", ())
        for example in (*self.examples, *self.negative, *self.not_id):
            if isinstance(example, bool) or not isinstance(example, str | bytes | int | os.PathLike | np.integer):
                raise RequestError(f"an example is an image file, its bytes or an indexed id, not {example!r}")
        if any(not isinstance(words, str) or not words.strip() for words in self.not_text):
            raise RequestError(f"not_text is words to search away from, not {self.not_text!r}")

    def _check_crop(self) -> None:
        """`crop` as (x, y, width, height) whole pixels; the photo it is cut from checks that it lies inside."""
        crop = self.crop
        if crop is None:
            return
        parts = crop.split(",") if isinstance(crop, str) else crop
        try:
            box = tuple(int(str(part).strip()) for part in parts)
        except (TypeError, ValueError):
            box = ()
        if len(box) != 4 or any(isinstance(part, bool | float) for part in parts) or min(box) < 0 or min(box[2:]) < 1:
            raise RequestError(f"crop is a box X,Y,W,H in whole pixels (width and height at least 1), not {crop!r}")
        if self.vector is not None or (self.text is not None and self.without_text() is None):
            raise RequestError("crop cuts a box from the query image (an image, an id or random), not from "
                               "a vector or words")
        object.__setattr__(self, "crop", box)

    @property
    def has_examples(self) -> bool:
        """Whether the query is several examples (more positives or any negative)."""
        return bool(self.examples or self.negative or self.not_id or self.not_text)

    def first_example(self) -> Query:
        """The query as asked, without its other examples (with its words and its crop)."""
        return dataclasses.replace(self, examples=(), negative=(), not_id=(), not_text=())

    def without_text(self) -> Query | None:
        """The query the words go with (None for words alone)."""
        if self.image is None and self.id is None and not self.random and self.vector is None:
            return None
        return Query(self.image, self.id, self.random, self.seed, self.vector, self.model, crop=self.crop)

    @classmethod
    def of(cls, query: Any = None, **kinds: Any) -> Query:
        """A Query from a positional value (image path, bytes, indexed id or vector) or keywords (text too)."""
        if isinstance(query, Query):
            return query
        if isinstance(query, bool):
            raise RequestError("a query is an image, an indexed id, random=True or a vector, not a bool")
        if isinstance(query, int | np.integer):
            return cls(id=int(query), **kinds)
        if isinstance(query, np.ndarray):
            return cls(vector=query, **kinds)
        if isinstance(query, list | tuple) and not query:
            raise RequestError("give at least one example to search from")
        return cls(image=query, **kinds)


@dataclass(frozen=True)
class ResolvedQuery:
    """A query as a vector, with what the result shows of it."""

    vector: Vector
    label: str
    id: int | None = None  # excluded from its own results
    timings: dict[str, float] = field(default_factory=dict)
    photo: str | bytes | None = None  # the query photo (a file or uploaded bytes), to check copies against
    also: tuple[int, ...] = ()  # the indexed ids of the other examples, excluded too

    @property
    def excluded(self) -> set[int]:
        """The indexed images the query was made of: never among its results."""
        return {*self.also, *([] if self.id is None else [self.id])}


# --- the options ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchOptions:
    """How to search. Each field says what it does (its `door` help), and the CLI flags and HTTP fields are made
    from these declarations (lookalike.options): adding an option is its field here, its implementation and its
    test. `where` and the scopes (by_class, by_cluster) are parsed by `of`; `expand` re-ranks the first answer
    without labels (see lookalike.expansion)."""

    k: int | str = field(default=10, metadata=door(
        "number of results, or auto: the matches that belong to the query (it comes before each one's 10th nearest "
        f"image), at most {AUTO_CAP}", kind=int, minimum=1, short="-k", words=(AUTO,), metavar="K"))
    method: str = field(default="cosine", metadata=door(
        f"{' or '.join(METRICS)}, or a similarity learned with train-similarity", min_length=1))
    min_score: float | None = field(default=None, metadata=door("drop matches scoring below this", kind=float))
    where: Where = field(default_factory=dict, metadata=door(
        "only images with this label, NAME=VALUE (repeat: the same name means either value, different names must all "
        "match); or taken when: taken>=2021-01-01, taken<2022 (>=, >, <, <=, = a year, month, day or time), or by "
        "camera=MAKE MODEL", repeat=True, pattern=r"^(?:[^=]*[^=\s][^=]*=|\s*[Tt][Aa][Kk][Ee][Nn]\s*[<>]).*\S",
        metavar="NAME=VALUE"))
    path_prefix: str | None = field(default=None, metadata=door("only images whose path starts with this"))
    near: str | None = field(default=None, metadata=door(
        "only photos taken within KM kilometres of LAT,LON (degrees; from their EXIF GPS position)",
        pattern=r"^\s*-?[\d.]+\s*,\s*-?[\d.]+\s*,\s*[\d.]+\s*$", metavar="LAT,LON,KM"))
    sort: str | None = field(default=None, metadata=door(
        "order the k best matches (those left after min_score and the filters) by the time taken: taken oldest "
        "first, -taken newest first (--sort=-taken)", choices=SORTS))
    by_class: int | None = field(default=None, metadata=SCOPE | door(
        "classify the query (train-classifier first) and search within its class; N widens to up to N classes until "
        "class_confidence is reached (top2 is read as 2)", kind=int, minimum=1, const=1, metavar="N"))
    class_confidence: float = field(default=DEFAULT_CLASS_CONFIDENCE, metadata=door(
        "with by_class: the cumulative class probability the widening stops at", kind=float, above=0, maximum=1))
    by_cluster: int | None = field(default=None, metadata=SCOPE | door(
        "search only the N clusters nearest the query (after `lookalike cluster`)", kind=int, minimum=1, const=1,
        metavar="N"))
    expand: str = field(default=DEFAULT_EXPANSION, metadata=door(
        "re-rank the first answer without labels: " + "; ".join(f"{name}: {text}" for name, text in
                                                                EXPLANATIONS.items()), choices=EXPANSIONS))
    expand_neighbours: int | None = field(default=None, metadata=door(
        "matches the expansion blends or walks over (default: "
        + ", ".join(f"{name} {count}" for name, count in DEFAULT_EXPAND_NEIGHBOURS.items()) + ")", kind=int,
        minimum=1, metavar="N"))
    expand_alpha: float | None = field(default=None, metadata=door(
        "matches weigh similarity^A (default: "
        + ", ".join(f"{name} {alpha:g}" for name, alpha in DEFAULT_EXPAND_ALPHA.items()) + ")", kind=float,
        minimum=0, metavar="A"))

    @classmethod
    def of(cls, **given: Any) -> SearchOptions:
        """Options from keywords as any skin gives them (None means the default), checked."""
        unknown = set(given) - set(option_names())
        if unknown:
            raise TypeError(f"unknown search option {', '.join(sorted(unknown))}; "
                            f"the options are {', '.join(option_names())}")
        chosen = {name: value for name, value in given.items() if value is not None}
        if "where" in chosen:
            chosen["where"] = parse_where(chosen["where"])
        for name in scope_option_names():
            if name in chosen:
                chosen[name] = parse_count(chosen[name], name)
        return cls(**chosen)

    def __post_init__(self) -> None:
        if is_auto(self.k):
            object.__setattr__(self, "k", AUTO)
        elif not isinstance(self.k, int | np.integer) or isinstance(self.k, bool) or self.k < 1:
            raise RequestError(f"k must be a whole number of at least 1 or auto, not {self.k!r}")
        if not isinstance(self.method, str) or not self.method:
            raise RequestError("method must name cosine, euclidean or a learned similarity")
        if not 0.0 < self.class_confidence <= 1.0:
            raise RequestError(f"class_confidence must be in (0, 1], not {self.class_confidence}")
        if self.sort is not None and self.sort not in SORTS:
            raise RequestError(f"sort is taken (oldest first) or -taken (newest first), not {self.sort!r}")
        self.capture_filter  # noqa: B018 - checks the capture terms of where and near (RequestError)
        if not isinstance(self.expand, str):
            raise RequestError(f"expand must be one of {', '.join(EXPANSIONS)}, not {self.expand!r}")
        object.__setattr__(self, "expand", self.expansion.method)  # checks the method and its parameters

    @property
    def limit(self) -> int:
        """The most matches this search returns: k, or the cut-off's cap for k="auto" (lookalike.cutoff)."""
        return AUTO_CAP if self.k == AUTO else int(self.k)

    @property
    def expansion(self) -> Expansion:
        """How the first answer is re-ranked (aqe, diffusion or none) with its parameters."""
        return Expansion.of(self.expand, self.expand_neighbours, self.expand_alpha)

    @property
    def capture_filter(self) -> tuple[Where, CaptureFilter | None]:
        """`where`'s label filters, and its capture terms (taken, camera) with `near` as one filter (None: none)."""
        return split_capture(self.where, self.near)

    @property
    def is_learned(self) -> bool:
        return self.method not in METRICS

    @property
    def filters(self) -> bool:
        return bool(self.where) or self.path_prefix is not None or self.near is not None

    @property
    def scopes_asked(self) -> list[str]:
        """The scope options this search sets (each narrows it through the scope registered under its name)."""
        return [name for name in scope_option_names() if getattr(self, name) is not None]


def option_names() -> list[str]:
    return [f.name for f in fields(SearchOptions)]


def scope_option_names() -> list[str]:
    """The options a scope registers under (a count of classes, clusters, ...)."""
    return [f.name for f in fields(SearchOptions) if f.metadata.get("scope")]


def parse_where(where: WhereTerms | None) -> Where:
    """Label filters from a mapping (name -> value or values) or `name=value` terms (a name given twice
    means either value), and capture terms: `taken` with a comparison is kept as that name and its operator
    ("taken>=": values), see lookalike.capture_filter. The one parser of `where` for every skin."""
    parsed: dict[str, list[str]] = {}
    if where is None:
        return {}
    if isinstance(where, str):
        where = [where]
    if isinstance(where, Mapping):
        for name, values in where.items():
            parsed[str(name)] = [values] if isinstance(values, str) else [str(v) for v in values]
    else:
        for term in where:
            compared = is_taken_term(str(term))
            if compared:
                operator = "" if compared[2] == "=" else compared[2]  # taken=2021 is kept as taken: 2021
                parsed.setdefault(TAKEN + operator, []).append(compared[3])
                continue
            name, equals, value = str(term).partition("=")
            if not equals or not name.strip() or not value.strip():
                raise RequestError(f"a where filter looks like NAME=VALUE (e.g. label=chair), not {term!r}")
            parsed.setdefault(name.strip(), []).append(value.strip())
    return {name: tuple(dict.fromkeys(values)) for name, values in parsed.items() if values}


def parse_count(value: int | str | bool, name: str) -> int | None:
    """by_class / by_cluster: a count of classes or clusters (1, 2, ...; 'top2' and True are accepted too)."""
    if value is False:
        return None
    if value is True:
        return 1
    text = str(value).strip().lower()
    text = {"": "1", "top": "1", "class": "1"}.get(text, text).removeprefix("top")
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise RequestError(f"{name} takes a count of at least 1 (1, 2 or top2, ...), not {value!r}")


# --- scores ---------------------------------------------------------------------------------------
def scores_from_inner_products(inner: npt.NDArray[np.float32], method: str) -> npt.NDArray[np.float32]:
    """Cosine is the inner product of unit vectors; Euclidean is reported as 1 / (1 + distance)."""
    if method == "cosine":
        return inner
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * inner))
    return (1.0 / (1.0 + distance)).astype(np.float32)


# --- what side features plug in -------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """Where a scope narrows the search: images whose label `name` has one of `values`."""

    name: str
    values: tuple[str, ...]
    predicted_class: dict[str, float] | None = None


class ScopeRule(Protocol):
    """A search option (by_class, by_cluster) that narrows the search from the query's vector."""

    def available(self, index: Index) -> bool: ...

    def narrow(self, index: Index, vector: Vector, options: SearchOptions) -> Scope: ...


class LearnedMethods(Protocol):
    """Trained similarity models that rank an index's images for a query vector."""

    def names(self, index: Index) -> list[str]: ...

    def rank(self, index: Index, vector: Vector, method: str, k: int, exclude: set[int],
             allowed: npt.NDArray[np.int64] | None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...


SCOPES: dict[str, ScopeRule] = {}
LEARNED: list[LearnedMethods] = []


def register_scope(option: str, rule: ScopeRule) -> None:
    if option not in scope_option_names():
        raise RequestError(f"{option!r} is not a scope option of SearchOptions")
    SCOPES[option] = rule


def register_learned_methods(provider: LearnedMethods) -> None:
    if provider not in LEARNED:
        LEARNED.append(provider)


def learned_method_names(index: Index) -> list[str]:
    return [name for provider in LEARNED for name in provider.names(index) if name not in METRICS]


def provider_of(index: Index, method: str) -> LearnedMethods:
    for provider in LEARNED:
        if method in provider.names(index):
            return provider
    known = [*METRICS, *learned_method_names(index)]
    raise RequestError(f"unknown method {method!r} for this index; choose from {', '.join(known)} "
                     "(learned methods are trained with `lookalike train-similarity`)")
