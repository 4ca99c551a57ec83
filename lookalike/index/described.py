"""Filters where the vectors are: the store's side of a backend that keeps each image's path and labels beside its
vector (Milvus; backends/filters.py) and filters by them inside its own search.

The rows stay the truth: such a backend asks them what to keep for the ids it is given (`attached`), the ids whose
labels changed in a write are described again before that write commits (`labels_changed`, `before_commit`), so
another process searching after the commit filters by the new labels; and a search's Filter goes to the backend
only when it says it can apply every condition (`applies_inside`), else it is turned into the ids it allows, as FAISS
has it always.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lookalike.backends.filters import Described, Filter

if TYPE_CHECKING:
    from lookalike.index.rows import ImageRows

def filters_inside(backend: Any) -> bool:
    return callable(getattr(backend, "can_filter", None))


def attached(rows: ImageRows, backend: Any) -> Any:
    """The backend, told how to describe ids from these rows when it filters inside (other backends unchanged)."""
    if backend is not None and filters_inside(backend):
        backend.describe = lambda ids: descriptions(rows, ids)
    return backend


def descriptions(rows: ImageRows, image_ids: Sequence[int]) -> list[Described]:
    """Each id's absolute path and labels (an id without a row: nothing to filter it by)."""
    records, labels = rows.records_of(image_ids), rows.labels_of(image_ids)
    return [Described(records[i].path, labels.get(i, {})) if i in records else Described() for i in image_ids]


def labels_changed(backend: Any, image_ids: Sequence[int]) -> None:
    """Remember ids whose labels a write changed (their rows are described again when it commits)."""
    if filters_inside(backend):
        backend.relabelled.update(int(i) for i in image_ids)


def before_commit(backend: Any) -> None:
    """Describe again the ids this write relabelled (a few requests, however many labels were set)."""
    if filters_inside(backend) and backend.relabelled:
        backend.describe_again(sorted(backend.relabelled))
        backend.relabelled.clear()


def applies_inside(backend: Any, narrowed: Filter) -> bool:
    """Whether a search passes the Filter itself to the backend (it applies every condition where its vectors
    are) rather than the ids it allows."""
    return bool(narrowed) and filters_inside(backend) and backend.can_filter(narrowed)
