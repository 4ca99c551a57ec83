"""The search page's first screen (issue 26): the results come first at laptop and phone size, tiles show their whole
label, the ranking's explanations are folded, and no focus ring is left on the heading after a search."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import DEMO_GALLERY
from test_browser import IMAGES_LOADED, PER_LABEL, chromium, keep_screenshots, searched, server  # noqa: F401

SIZES = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
QUERY = sorted((DEMO_GALLERY / "pants").glob("*.jpg"))[PER_LABEL]  # not indexed


def searched_page(chromium, server: str, size: str):  # noqa: F811
    """The page at `size`, after a search by upload; `page.outside`: every request to another host."""
    phone = size == "phone"
    context = chromium.new_context(viewport=SIZES[size], is_mobile=phone, has_touch=phone)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.outside = []
    page.on("request", lambda request: page.outside.append(request.url)
            if urlparse(request.url).hostname not in (None, "127.0.0.1", "localhost") else None)
    page.goto(server + "/?index=organised")  # the index with the most controls: labels, classifier, clusters
    page.wait_for_selector("#index option", state="attached")
    searched(page, lambda: page.set_input_files("#file", str(QUERY)))
    page.wait_for_function(IMAGES_LOADED)
    page.wait_for_function("window.scrollY === 0")
    return page


@pytest.mark.parametrize("size", SIZES)
def test_the_first_row_of_results_is_on_the_first_screen(chromium, server: str, size: str,  # noqa: F811
                                                         tmp_path: Path) -> None:
    page = searched_page(chromium, server, size)
    tiles = page.eval_on_selector_all("#results li", "items => items.map(i => i.getBoundingClientRect().toJSON())")
    first_row = [tile for tile in tiles if tile["top"] == tiles[0]["top"]]
    assert len(first_row) >= (2 if size == "phone" else 6)
    assert all(tile["bottom"] <= SIZES[size]["height"] for tile in first_row), "a result of the first row is cut"
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
    assert page.is_visible("#filter-field summary") and not page.is_visible("#filter")  # Filters folded at any size
    page.screenshot(path=str(tmp_path / f"first-screen-{size}.png"))
    keep_screenshots(tmp_path, f"first-screen-{size}.png")
    assert page.outside == []
    page.context.close()


def test_tiles_show_their_whole_label_and_the_explanations_are_folded(chromium, server: str) -> None:  # noqa: F811
    page = searched_page(chromium, server, "laptop")
    labels = page.eval_on_selector_all("#results .label", """labels => labels.map(label => ({
        text: label.textContent, whole: label.scrollWidth <= label.clientWidth}))""")
    assert labels and all(label["text"] and label["whole"] for label in labels)
    assert not page.is_visible("#method-help") and not page.is_visible("#timings")
    page.click("#ranking summary")
    assert page.inner_text("#method-help").startswith("cosine: how closely")
    assert "search" in page.inner_text("#timings") and page.inner_text("#timings").endswith(" ms")
    page.context.close()


def test_no_focus_ring_is_left_on_the_heading_after_a_search(chromium, server: str) -> None:  # noqa: F811
    page = searched_page(chromium, server, "laptop")
    searched(page, lambda: page.locator("#results .similar").nth(1).click(force=True))
    assert page.evaluate("document.activeElement.id") == "results-heading"  # screen readers go on at the results
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring == "none"
    page.context.close()


def test_redoc_asks_no_other_host(chromium, server: str) -> None:  # noqa: F811
    """ReDoc's bundle shows its vendor's logo from cdn.redoc.ly: the page's content policy refuses it in the browser,
    so no request leaves (none reaches the route that would send it), and the reference still renders."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    sent, refused = [], []
    page.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).hostname == "127.0.0.1"
               else (sent.append(route.request.url), route.abort()))
    page.on("requestfailed", lambda request: refused.append((urlparse(request.url).hostname, request.failure)))
    page.goto(server + "/redoc")
    page.wait_for_selector("[role=menuitem]")
    page.wait_for_timeout(500)
    assert page.locator("[role=menuitem]").count() >= 5
    assert sent == []
    assert all(failure == "csp" for _, failure in refused)
    context.close()
