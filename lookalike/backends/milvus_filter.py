"""A Filter as a Milvus boolean expression over the scalars a collection keeps beside each vector.

The path is kept hex-encoded (its bytes as the file system has them, two hex digits each): a prefix of a path is a
prefix of its hex, and hex has none of the characters `like` treats specially (`%`, `_`, `\\`), which Milvus Lite and
the 2.3 server escape differently. Labels are a JSON field; a value is matched with `==` (Milvus Lite refuses `in` on
a JSON key), several values of one name joined by `or`. Tested on Milvus Lite and on a Milvus 2.3.5 server.
"""

from __future__ import annotations

import json
import os

from lookalike.backends.filters import Described, Filter

PATH_FIELD, LABELS_FIELD = "path_hex", "labels"
PATH_LENGTH = 65_535  # the longest VARCHAR Milvus keeps: a path of 32,767 bytes
EXPRESSED = {"where", "path_prefix"}  # the conditions of a Filter that become part of the expression
MOST_VALUES = 1_000  # label values in one expression; more are searched by ids (an expression has a size limit)


def can_express(narrowed: Filter) -> bool:
    """Whether every condition of the filter has a clause here (else the store searches by allowed ids)."""
    values = [len(wanted) for wanted in narrowed.where.values()]
    return narrowed.asks() <= EXPRESSED and all(values) and sum(values) <= MOST_VALUES


def expression(narrowed: Filter) -> str:
    """The filter as a Milvus expression: every `where` name has one of its values, and the path starts so."""
    clauses = [_any_value(name, values) for name, values in narrowed.where.items()]
    if narrowed.path_prefix is not None:
        clauses.append(f'{PATH_FIELD} like "{path_hex(os.path.abspath(narrowed.path_prefix))}%"')
    return " and ".join(clauses)


def scalars(described: Described) -> dict[str, object]:
    """The scalar fields of one row."""
    return {PATH_FIELD: path_hex(described.path) if described.path else "", LABELS_FIELD: dict(described.labels)}


def path_hex(path: str) -> str:
    return os.fsencode(path).hex()


def _any_value(name: str, values: tuple[str, ...]) -> str:
    key = f"{LABELS_FIELD}[{_literal(name)}]"
    return "(" + " or ".join(f"{key} == {_literal(value)}" for value in values) + ")"


def _literal(text: str) -> str:
    """A string literal of Milvus' expression language (double quotes, backslash escapes, as JSON writes them)."""
    return json.dumps(text, ensure_ascii=False)
