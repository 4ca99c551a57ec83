"""One declaration per search option: SearchOptions (lookalike/search.py) says each option's name and default;
the CLI's `search` flags and the HTTP fields are checked against it here, in one table, so a door cannot give
an option another default or leave one out."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

import pytest

from lookalike.cli import build_parser
from lookalike.expansion import EXPANSIONS
from lookalike.search import SearchOptions, option_names, scope_option_names

pytest.importorskip("fastapi")
from lookalike.web.search_api import SearchFields  # noqa: E402  (the server's extra is installed)


def api_default(name: str) -> object:
    field = next(f for f in fields(SearchOptions) if f.name == name)
    return field.default_factory() if field.default is MISSING else field.default  # type: ignore[misc]


def search_flags() -> dict[str, argparse.Action]:
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in verbs.choices["search"]._actions}


def http_default(name: str) -> object:
    field = SearchFields.model_fields[name]
    return field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]


@pytest.mark.parametrize("name", option_names())
def test_every_door_takes_the_option_with_the_apis_default(name):
    flags = search_flags()
    assert name in flags, f"the CLI's search has no --{name.replace('_', '-')}"
    assert flags[name].default is None, "a CLI flag leaves the default to SearchOptions (None: not given)"
    assert name in SearchFields.model_fields, f"the HTTP search has no field {name}"
    given = http_default(name)
    assert given is None or given == api_default(name) or (given == [] and api_default(name) == {}), \
        f"HTTP's default for {name} is {given!r}, SearchOptions' is {api_default(name)!r}"


def test_the_expansions_offered_are_the_apis_in_every_door():
    assert set(search_flags()["expand"].choices) == set(EXPANSIONS)
    assert set(SearchFields.model_fields["expand"].annotation.__args__) == set(EXPANSIONS)


def test_scope_options_are_marked_on_the_options_themselves():
    assert scope_option_names() == ["by_class", "by_cluster"]
    assert SearchOptions.of(by_class=2).scopes_asked == ["by_class"]
    assert SearchOptions().scopes_asked == []
