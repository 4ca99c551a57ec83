"""A Filter as a Milvus boolean expression over the scalars a collection keeps beside each vector.

The path is kept hex-encoded (its bytes as the file system has them, two hex digits each): a prefix of a path is a
prefix of its hex, and hex has none of the characters `like` treats specially (`%`, `_`, `\\`), which Milvus Lite and
the 2.3 server escape differently.

Labels are kept twice. `label_pairs`, an ARRAY of `name=value` strings, is what a label filter reads: every value of
one name in one `array_contains_any` clause, names joined by `and` (one clause per name however many values, where a
JSON comparison per value made ten values 5.8x an unfiltered search at 1M rows on the server). In a pair the name's
`\\` and `=` are escaped with a backslash, so the first bare `=` ends the name (`a=b` + `c` and `a` + `b=c` differ).
`labels`, a JSON field, is the same labels as an object: the filter of a collection made before `label_pairs` was
(a value matched with `==`, several joined by `or`; Milvus Lite refuses `in` on a JSON key). Tested on Milvus Lite
and on a Milvus 2.3.5 server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from lookalike.backends.filters import Described, Filter
from lookalike.errors import RequestError

PATH_FIELD, LABELS_FIELD, PAIRS_FIELD = "path_hex", "labels", "label_pairs"
PATH_LENGTH = 65_535  # the longest VARCHAR Milvus keeps: a path of 32,767 bytes
PAIRS_CAPACITY = 1_024  # label names one image may have in a Milvus collection (Milvus allows up to 4,096)
PAIR_LENGTH = 65_535  # bytes of one name=value pair (the 2.3.5 server and Lite do not check it; later servers may)
EXPRESSED = {"where", "path_prefix"}  # the conditions of a Filter that become part of the expression
MOST_VALUES = 1_000  # label values in one expression; more are searched by ids (an expression has a size limit)


def can_express(narrowed: Filter) -> bool:
    """Whether every condition of the filter has a clause here (else the store searches by allowed ids)."""
    values = [len(wanted) for wanted in narrowed.where.values()]
    return narrowed.asks() <= EXPRESSED and all(values) and sum(values) <= MOST_VALUES


def expression(narrowed: Filter, pairs: bool = True) -> str:
    """The filter as a Milvus expression: every `where` name has one of its values (read from `label_pairs`, or
    from the JSON labels where the collection has no pairs), and the path starts so."""
    any_value = _any_pair if pairs else _any_json_value
    clauses = [any_value(name, values) for name, values in narrowed.where.items()]
    if narrowed.path_prefix is not None:
        clauses.append(f'{PATH_FIELD} like "{path_hex(os.path.abspath(narrowed.path_prefix))}%"')
    return " and ".join(clauses)


def add_fields(schema: Any) -> None:
    """The scalar fields to a collection's schema (a pymilvus CollectionSchema)."""
    from pymilvus import DataType

    schema.add_field(PATH_FIELD, DataType.VARCHAR, max_length=PATH_LENGTH)
    schema.add_field(LABELS_FIELD, DataType.JSON)
    schema.add_field(PAIRS_FIELD, DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=PAIRS_CAPACITY,
                     max_length=PAIR_LENGTH)


def scalars(image_id: int, described: Described, pairs: bool = True) -> dict[str, object]:
    """The scalar fields of one row (`pairs`: the collection has the label_pairs field)."""
    row: dict[str, object] = {PATH_FIELD: path_hex(described.path) if described.path else "",
                              LABELS_FIELD: dict(described.labels)}
    if pairs:
        row[PAIRS_FIELD] = label_pairs(image_id, described.labels)
    return row


def label_pairs(image_id: int, labels: Mapping[str, str]) -> list[str]:
    """An image's labels as `name=value` strings; more or longer than a collection keeps is the user's error."""
    if len(labels) > PAIRS_CAPACITY:
        raise RequestError(f"image {image_id} has {len(labels):,} label names; a Milvus collection keeps at most "
                           f"{PAIRS_CAPACITY:,} per image: fewer names, or a FAISS store")
    pairs = [label_pair(name, value) for name, value in labels.items()]
    for pair in pairs:
        if len(pair.encode()) > PAIR_LENGTH:
            raise RequestError(f"image {image_id} has a label of {len(pair.encode()):,} bytes ({pair[:40]}...); a "
                               f"Milvus collection keeps at most {PAIR_LENGTH:,} bytes per name=value")
    return pairs


def label_pair(name: str, value: str) -> str:
    """`name=value`, the name's backslashes and equals signs escaped (the first bare `=` ends the name)."""
    return name.replace("\\", "\\\\").replace("=", "\\=") + "=" + value


def path_hex(path: str) -> str:
    return os.fsencode(path).hex()


def _any_pair(name: str, values: tuple[str, ...]) -> str:
    return f"array_contains_any({PAIRS_FIELD}, [{', '.join(_literal(label_pair(name, v)) for v in values)}])"


def _any_json_value(name: str, values: tuple[str, ...]) -> str:
    key = f"{LABELS_FIELD}[{_literal(name)}]"
    return "(" + " or ".join(f"{key} == {_literal(value)}" for value in values) + ")"


def _literal(text: str) -> str:
    """A string literal of Milvus' expression language (double quotes, backslash escapes, as JSON writes them)."""
    return json.dumps(text, ensure_ascii=False)
