"""The search page's box over the query photo and its "more / less like this" examples, in a real browser: `lookalike
serve` on loopback over 16 real photos, Chromium driven by Playwright, a composite photo of two of them uploaded."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image
from test_browser import (
    headless_chromium,
    labelled_gallery,
    open_search_page,
    read_grid,
    require_browser,
    searched,
    serving,
)

from lookalike.index import ImageIndex

SCENE, PART = ("shoes", 0), ("hat", 1)  # the composite: a shoe photo at 480x480 with a hat photo pasted at BOX
BOX = (280, 280, 200, 200)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`lookalike serve` over one index of the labelled gallery; its base URL and the composite photo (not indexed)."""
    require_browser()
    gallery = labelled_gallery(tmp_path_factory.mktemp("regions-gallery"))
    folder = tmp_path_factory.mktemp("regions-index") / "clothes"
    with ImageIndex.create(folder) as index:
        index.add_folder(gallery)
    photo = lambda label, number: sorted((gallery / label).glob("*.jpg"))[number]  # noqa: E731
    scene = Image.open(photo(*SCENE)).convert("RGB").resize((480, 480))
    scene.paste(Image.open(photo(*PART)).convert("RGB").resize(BOX[2:]), BOX[:2])
    composite = tmp_path_factory.mktemp("regions-query") / "composite.jpg"
    scene.save(composite, quality=92)
    with serving([folder], tmp_path_factory.mktemp("regions-log")) as base:
        yield base, composite


@pytest.fixture
def page(server) -> Iterator:
    with headless_chromium() as chromium:
        page = open_search_page(chromium, server[0], 20_000)
        yield page
        page.context.close()


def sent(page, action) -> dict[str, list[str]]:
    """Do something that runs a search; wait until its result is shown; the fields it sent: a GET's query, or for a
    POST (whose multipart body Playwright does not show) the box the server says it searched from ("... [X,Y,W,H]")."""
    with page.expect_response(lambda r: "/search" in r.url) as response:
        action()
    page.wait_for_function("document.querySelector('#status').textContent !== 'searching…'")
    if response.value.request.method == "GET":
        return parse_qs(urlparse(response.value.url).query)
    box = re.search(r"\[(\d+,\d+,\d+,\d+)\]$", response.value.json()["query"])
    return {"crop": [box.group(1)]} if box else {}


def drag(page, share_from: tuple[float, float], share_to: tuple[float, float]) -> None:
    """A mouse drag over the query photo, from and to points given as shares of its width and height."""
    rect = page.locator("#query-image").bounding_box()
    at = lambda share: (rect["x"] + share[0] * rect["width"], rect["y"] + share[1] * rect["height"])  # noqa: E731
    page.mouse.move(*at(share_from))
    page.mouse.down()
    page.mouse.move(*at(((share_from[0] + share_to[0]) / 2, (share_from[1] + share_to[1]) / 2)), steps=3)
    page.mouse.move(*at(share_to), steps=3)
    page.mouse.up()


def test_a_box_drawn_on_the_query_searches_from_that_part_and_a_result_starts_afresh(page, server) -> None:
    _, composite = server
    searched(page, lambda: page.set_input_files("#file", str(composite)))
    page.wait_for_function("document.querySelector('#query-image').naturalWidth > 0")
    whole = read_grid(page)
    assert whole[0]["label"] == SCENE[0]
    boxed_sent = sent(page, lambda: drag(page, (290 / 480, 290 / 480), (470 / 480, 470 / 480)))
    x, y, w, h = map(int, boxed_sent["crop"][0].split(","))
    assert abs(x - 290) <= 6 and abs(y - 290) <= 6 and abs(w - 180) <= 8 and abs(h - 180) <= 8
    boxed = read_grid(page)
    assert boxed[0]["label"] == PART[0] and boxed != whole
    assert page.is_visible("#crop-box") and page.is_visible("#crop-clear")
    assert parse_qs(urlparse(page.url).query)["crop"] == boxed_sent["crop"]

    first = page.locator("#results li").first
    first_id = first.get_attribute("data-id")
    from_result = sent(page, lambda: first.locator(".similar").click())
    assert "crop" not in from_result and from_result["id"] == [first_id]
    assert page.is_hidden("#crop-box")
    page.wait_for_function("document.querySelector('#query-image').complete")
    own_box = sent(page, lambda: drag(page, (0.1, 0.1), (0.6, 0.7)))
    assert own_box["id"] == from_result["id"] and len(own_box["crop"][0].split(",")) == 4
    whole_again = sent(page, lambda: page.click("#crop-clear"))
    assert "crop" not in whole_again and page.is_hidden("#crop-box")


def test_less_like_this_adds_a_chip_and_searches_again_and_the_chip_takes_it_back(page) -> None:
    searched(page, lambda: page.click("#random"))
    before = read_grid(page)
    unlike = before[0]
    less = sent(page, lambda: page.locator("#results li").first.locator(".example.less").click())
    assert less["not_id"] == [str(unlike["id"])]
    chip = page.locator("#examples .example-chip.less")
    assert chip.count() == 1 and chip.get_attribute("data-id") == str(unlike["id"])
    after = read_grid(page)
    assert unlike["id"] not in [tile["id"] for tile in after] and after != before
    liked = after[0]
    both = sent(page, lambda: page.locator("#results li").first.locator(".example.more").click())
    assert both["more_id"] == [str(liked["id"])] and both["not_id"] == [str(unlike["id"])]
    assert page.locator("#examples .example-chip").count() == 2
    state = parse_qs(urlparse(page.url).query)
    assert state["more_id"] == [str(liked["id"])] and state["not_id"] == [str(unlike["id"])]
    removed = sent(page, lambda: page.locator("#examples .example-chip.less").click())
    assert "not_id" not in removed and removed["more_id"] == [str(liked["id"])]
    assert page.locator("#examples .example-chip").count() == 1
