"""Whose fault an error is: what the user asked for or gave that cannot be done is a LookalikeError (the CLI
exits 2 with its message, HTTP answers 4xx); the subclasses still are the built-in errors they replaced."""

from __future__ import annotations

import json

import pytest

from lookalike.cli import main
from lookalike.errors import LookalikeError, NotFoundError, RequestError
from lookalike.index import ImageIndex, IndexBusyError, IndexFormatError, UnknownLabelError
from lookalike.search import SearchOptions

MODEL = "color-histogram"  # a real embedder that needs no weights: the errors, not the vectors, are tested


@pytest.fixture
def small_index(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx", model=MODEL) as index:
        index.add_folder(photo_folder)
        index.set_labels({int(i): {"colour": "red"} for i in index.ids()})
    return tmp_path / "idx"


def test_an_id_not_in_the_index_is_not_found_and_says_so_unquoted(small_index):
    with ImageIndex.open(small_index) as index, pytest.raises(NotFoundError) as raised:
        index.search(id=999, k=3)
    assert isinstance(raised.value, LookalikeError) and isinstance(raised.value, KeyError)
    assert str(raised.value) == "no image with id 999 in the index"


@pytest.mark.parametrize("options", [{"k": 0}, {"class_confidence": 2.0}, {"where": ["no-equals-sign"]},
                                     {"by_class": "zero"}])
def test_options_that_cannot_be_used_are_request_errors(options):
    with pytest.raises(RequestError):
        SearchOptions.of(**options)


def test_an_unknown_label_and_an_unknown_method_are_the_users_to_fix(small_index):
    with ImageIndex.open(small_index) as index:
        with pytest.raises(UnknownLabelError) as unknown:
            index.search(id=1, where={"colour": "blue"})
        assert isinstance(unknown.value, LookalikeError)
        with pytest.raises(RequestError, match="unknown method"):
            index.search(id=1, method="no-such-method")


def test_a_busy_index_and_a_newer_format_are_the_users_to_wait_for_or_upgrade(small_index):
    with (ImageIndex.open(small_index) as writing, writing.sync(), ImageIndex.open(small_index) as other,
          pytest.raises(IndexBusyError) as busy):
        other.set_labels({1: {"colour": "green"}})
    assert isinstance(busy.value, LookalikeError)
    manifest = json.loads((small_index / "manifest.json").read_text())
    (small_index / "manifest.json").write_text(json.dumps(manifest | {"format_version": 99}))
    with pytest.raises(IndexFormatError) as newer:
        ImageIndex.open(small_index)
    assert isinstance(newer.value, LookalikeError)


def test_the_cli_prints_a_users_error_in_one_line_and_exits_2(small_index, capsys):
    assert main(["search", "--id", "999", "--index", str(small_index)]) == 2
    assert capsys.readouterr().err.strip() == "lookalike: error: no image with id 999 in the index"


@pytest.mark.parametrize("bug", [KeyError("a key the code forgot"), ValueError("a value the code got wrong")])
def test_a_plain_key_or_value_error_is_a_bug_with_a_traceback_in_the_cli(small_index, monkeypatch, bug):
    """Only the LookalikeError family is the user's: anything else escapes main (a traceback), never exit 2."""
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(ImageIndex, "search", broken)
    with pytest.raises(type(bug), match="the code"):
        main(["search", "--id", "1", "--index", str(small_index)])


@pytest.mark.parametrize("bug", [KeyError("a key the code forgot"), ValueError("a value the code got wrong")])
def test_a_plain_key_or_value_error_is_a_500_over_http_never_a_404_or_422(small_index, monkeypatch, caplog, bug):
    from fastapi.testclient import TestClient

    from lookalike.web.app import create_app

    def broken(*args, **kwargs):
        raise bug

    client = TestClient(create_app([small_index]), raise_server_exceptions=False)
    name = client.get("/api/indexes").json()[0]["name"]
    assert client.get(f"/api/indexes/{name}/search", params={"id": 999}).status_code == 404  # the user's: 404
    monkeypatch.setattr(ImageIndex, "search", broken)
    with caplog.at_level("INFO", logger="lookalike.web"):
        answer = client.get(f"/api/indexes/{name}/search", params={"id": 1})
    assert answer.status_code == 500 and "the code" not in answer.text
    assert any(getattr(record, "status", None) == 500 for record in caplog.records)  # the request's log line
