"""The HTTP fields of an API dataclass's options, generated from their declaration (lookalike.options): the field's
name, default, help and checks are the API's; the server adds only its own limits (SERVING_LIMITS), which protect
it from requests too large to serve. An unset field is left out of the request (a query or form cannot carry
null), so the schema does not offer null."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
)
from pydantic.json_schema import SkipJsonSchema

from lookalike.options import Door, Offered, offered

# The server's own caps (a Python caller may ask for more): results per request, the expansion's reach, the
# length of words, and ids SQLite can hold (a larger one is refused here, not overflowed in the store).
MAX_K = 1000
SERVING_LIMITS: dict[str, dict[str, float]] = {
    "k": {"le": MAX_K},
    "expand_neighbours": {"le": 1000},
    "expand_alpha": {"le": 100},
    "text": {"max_length": 1000},
    "id": {"le": 2**63 - 1},
}


class Fields(BaseModel):
    """Options as query or form fields; an unknown field is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    def values_of(self, cls: type) -> dict[str, Any]:
        """The values of `cls`'s options that this request carries (copies of its lists, as model_dump gives them)."""
        return {name: list(value) if isinstance(value := getattr(self, name), list) else value
                for name in option_names(cls) if name in type(self).model_fields}


@functools.cache
def option_names(cls: type) -> tuple[str, ...]:
    """The names of an API dataclass's options, looked up once per class (twice a search)."""
    return tuple(item.name for item in offered(cls))


def fields_model(name: str, cls: type, base: type[BaseModel] = Fields, leave_out: frozenset[str] = frozenset(),
                 doc: str | None = None, nullable: bool = False) -> type[BaseModel]:
    """A pydantic model with one field per option of `cls` that HTTP offers (less `leave_out`), on `base`.
    `nullable`: a JSON body, which may say null for "the default" (query and form fields are left out instead)."""
    declared = {item.name: http_field(item, nullable) for item in offered(cls, lambda door: door.http)
                if item.name not in leave_out}
    return create_model(name, __base__=base, __doc__=doc or base.__doc__, **declared)  # type: ignore[call-overload]


def http_field(item: Offered, nullable: bool = False) -> tuple[Any, Any]:
    """The annotation and Field of one option."""
    door = item.door
    value: Any = Literal[door.choices] if door.choices else door.kind  # type: ignore[valid-type]
    checks = checks_of(door) | SERVING_LIMITS.get(item.name, {})
    if checks:
        value = Annotated[value, Field(**checks)]
    if door.words:
        value = Annotated[value | Literal[door.words], WrapValidator(or_words(door.words))]  # type: ignore[valid-type]
    if door.repeat:
        return list[value], Field(default_factory=list, description=door.help)
    if item.default is None:
        return (value | None if nullable else value | SkipJsonSchema[None]), Field(None, description=door.help)
    return value, Field(item.default, description=door.help)


def or_words(words: tuple[str, ...]) -> Any:
    """A validator that names a field's one problem, not one per branch of its union ("k: Input should be greater
    than or equal to 1, or 'auto'")."""
    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, str) and value.strip().lower() in words:
            return value.strip().lower()
        try:
            return handler(value)
        except ValidationError as error:
            raise ValueError(f"{error.errors()[0]['msg']}, or {' or '.join(map(repr, words))}") from None

    return check


def checks_of(door: Door) -> dict[str, Any]:
    checks = {"ge": door.minimum, "le": door.maximum, "gt": door.above, "pattern": door.pattern,
              "min_length": door.min_length, "max_length": door.max_length}
    return {name: value for name, value in checks.items() if value is not None}
