"""One declaration per index option: IndexPlan (lookalike/index/plan.py) says each option of a new index once; the
CLI flags of `index` and the HTTP body of a new index are made from it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from lookalike.cli import build_parser
from lookalike.errors import RequestError
from lookalike.index.plan import IndexPlan
from lookalike.options import offered

pytest.importorskip("fastapi")
from lookalike.web.indexes_api import NewIndex  # noqa: E402  (the server's extra is installed)

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lookalike"
HAND_MADE_FOR_HTTP = {"model"}  # the server narrows the models to packaged or named ones (no file of its own)


def index_flags() -> dict[str, argparse.Action]:
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in verbs.choices["index"]._actions}


@pytest.mark.parametrize("item", list(offered(IndexPlan, lambda door: door.cli)), ids=lambda item: item.name)
def test_the_index_verb_offers_each_plan_field_as_declared(item):
    flag = index_flags()[item.name]
    assert flag.help.startswith(item.door.help) and flag.default is None


@pytest.mark.parametrize("item", list(offered(IndexPlan, lambda door: door.http)), ids=lambda item: item.name)
def test_a_new_index_over_http_takes_each_plan_field_as_declared(item):
    if item.name not in HAND_MADE_FOR_HTTP:
        assert NewIndex.model_fields[item.name].description == item.door.help


def test_the_servers_files_and_hardware_are_never_named_over_http():
    assert not {"weights", "store", "device"} & set(NewIndex.model_fields)


def test_no_door_declares_an_index_option_by_hand():
    sources = [PACKAGE_DIR / "cli" / name for name in ("common.py", "core.py", "scale.py")]
    for item in offered(IndexPlan):
        for source in sources:
            assert f'"{item.flag}"' not in source.read_text(), f"{source.name} declares {item.flag} by hand"
        if item.name not in HAND_MADE_FOR_HTTP:
            text = (PACKAGE_DIR / "web" / "indexes_api.py").read_text()
            assert not re.search(rf"^\s+{item.name}: .*= Field\(", text, re.M)


def test_a_plan_refuses_unknown_options_and_values():
    with pytest.raises(TypeError, match="unknown index option colour"):
        IndexPlan.of(colour="red")
    with pytest.raises(RequestError, match="index_type must be auto or one of"):
        IndexPlan.of(index_type="kd-tree")
    assert IndexPlan.of(pca=None, dba=0) == IndexPlan(dba=0)
