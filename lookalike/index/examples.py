"""Several examples as one query (Rocchio): the normalised mean of the positive examples, less `negative_weight`
times the mean of the negative ones, normalised again. Each example is resolved as a query of its own (a file,
bytes, an indexed id, words), so an example that is an indexed image costs no embedding."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lookalike.errors import RequestError
from lookalike.search import Query, ResolvedQuery, Vector


def resolve_examples(resolve: Callable[[Query], ResolvedQuery], query: Query) -> ResolvedQuery:
    """The query's examples resolved one by one and combined; the ids of all of them are excluded from results."""
    positives = [resolve(query.first_example()), *(resolve(Query.of(example)) for example in query.examples)]
    negatives = [*(resolve(Query.of(example)) for example in query.negative),
                 *(resolve(Query(id=image_id)) for image_id in query.not_id),
                 *(resolve(Query(text=words)) for words in query.not_text)]
    vector = rocchio([p.vector for p in positives], [n.vector for n in negatives], query.negative_weight)
    label = " + ".join(p.label for p in positives) + "".join(f" - {n.label}" for n in negatives)
    ids = [r.id for r in (*positives, *negatives) if r.id is not None]
    first = positives[0].id
    return ResolvedQuery(vector, label, first, summed([r.timings for r in (*positives, *negatives)]),
                         photo=positives[0].photo if len(positives) == 1 and not negatives else None,
                         also=tuple(i for i in dict.fromkeys(ids) if i != first))


def rocchio(positives: Sequence[Vector], negatives: Sequence[Vector], beta: float) -> Vector:
    """unit(mean(unit positives)) - beta * mean(unit negatives), as a unit vector."""
    query = unit(np.mean([unit(v) for v in positives], axis=0))
    if negatives:
        query = query - beta * np.mean([unit(v) for v in negatives], axis=0)
    norm = float(np.linalg.norm(query))
    if norm < 1e-6:
        raise RequestError("the positive and negative examples cancel out: nothing is left to search for "
                           "(give other examples or a smaller negative_weight)")
    return (query / norm).astype(np.float32)


def unit(vector: Vector) -> Vector:
    vector = np.asarray(vector, np.float32).reshape(-1)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def summed(timings: Sequence[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in timings:
        for name, ms in part.items():
            total[name] = total.get(name, 0.0) + ms
    return total
