"""One declaration per search option: SearchOptions (lookalike/search.py) says each option's name and default;
the CLI's `search` flags and the HTTP fields are checked against it here, in one table, so a door cannot give
an option another default or leave one out."""

from __future__ import annotations

import argparse
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import pytest

from lookalike.cli import build_parser
from lookalike.cli.options import add_options, given
from lookalike.expansion import EXPANSIONS
from lookalike.options import door, offered
from lookalike.search import Query, SearchOptions, option_names, scope_option_names

pytest.importorskip("fastapi")
from lookalike.web.fields import fields_model  # noqa: E402  (the server's extra is installed)
from lookalike.web.search_api import SearchFields, SearchFromIndexed  # noqa: E402

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lookalike"


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


def door_names() -> list[str]:
    return [item.name for cls in (Query, SearchOptions) for item in offered(cls)]


@pytest.mark.parametrize("name", door_names())
def test_each_door_says_of_an_option_what_its_declaration_says(name):
    declared = next(item.door for cls in (Query, SearchOptions) for item in offered(cls) if item.name == name)
    assert search_flags()[name].help.startswith(declared.help), f"the CLI's help of --{name} is its own"
    if declared.http:  # an option HTTP takes otherwise (negative: uploads, not_image) is not a field of its own
        assert SearchFromIndexed.model_fields[name].description == declared.help, f"HTTP's description of {name}"


@pytest.mark.parametrize("name", door_names())
def test_no_door_declares_an_option_by_hand(name):
    """The CLI flags and HTTP fields are generated: a hand-written --flag or field would drift from the API."""
    flag = '"--' + name.replace("_", "-") + '"'
    for source in [PACKAGE_DIR / "cli" / "core.py", PACKAGE_DIR / "web" / "search_api.py"]:  # the search doors
        text = source.read_text()
        assert flag not in text, f"{source.name} declares {flag} by hand"
        assert not re.search(rf"^\s+{name}: .*= (Field|Query|Form)\(", text, re.M), f"{source.name} declares {name}"


def test_a_new_option_reaches_both_doors_from_its_declaration_alone():
    @dataclass(frozen=True)
    class Extended:
        taken_after: str | None = field(default=None, metadata=door("only photos taken after this date"))
        limit: int = field(default=5, metadata=door("how many", kind=int, minimum=1))

    parser = argparse.ArgumentParser()
    add_options(parser, Extended)
    args = parser.parse_args(["--taken-after", "2021-01-01", "--limit", "3"])
    assert given(args, Extended) == {"taken_after": "2021-01-01", "limit": 3}
    model = fields_model("ExtendedFields", Extended)
    assert model(limit=2).values_of(Extended) == {"taken_after": None, "limit": 2}
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        model(limit=0)


def test_the_http_answer_has_the_results_fields_and_only_the_links_besides():
    from lookalike.search import Match, SearchResult
    from lookalike.web.bodies import Match as MatchBody
    from lookalike.web.bodies import SearchAnswer

    result = SearchResult([Match(3, "/p/a.jpg", 0.91234567, {"label": "shoe"}, 0.9)], "q.jpg", "cosine", {"embed": 1.5})
    shaped = result.to_dict()
    assert set(SearchAnswer.model_fields) == set(shaped) | {"index", "query_thumbnail"}
    added_by_the_web = set(MatchBody.model_fields) - set(shaped["matches"][0])
    assert set(shaped["matches"][0]) <= set(MatchBody.model_fields)
    assert added_by_the_web <= {"thumbnail", "file", "video", "time"}  # links, and a video frame's video and time
    assert shaped["matches"][0]["score"] == 0.912346 and shaped["timings_ms"] == {"embed": 1.5}
