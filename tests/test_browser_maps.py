"""The maps page in a real browser: the collection's map drawn in the site (a click or a tap searches, zoom by wheel
or pinch, keys), and the contact sheets as a grid; `lookalike serve` on loopback, Debian's Chromium via Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from test_browser import (
    LABELS,
    PER_LABEL,
    headless_chromium,
    keep_screenshots,
    labelled_gallery,
    require_browser,
    serving,
)

from lookalike.index import ImageIndex
from lookalike.organise.clustering import cluster_index
from lookalike.organise.labels import import_labels
from lookalike.organise.mapping import map_index

MAPPED = "mapped"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`lookalike serve` over `mapped` (16 labelled photos, clustered with contact sheets, mapped) and `plain`."""
    require_browser()
    gallery = labelled_gallery(tmp_path_factory.mktemp("maps-gallery"))
    root = tmp_path_factory.mktemp("maps-index")
    with ImageIndex.create(root / MAPPED) as index:
        index.add_folder(gallery)
        import_labels(index, gallery / "labels.csv")
        cluster_index(index, k=len(LABELS))
        map_index(index)
    with ImageIndex.create(root / "plain") as index:
        index.add_folder(gallery / "hat")
    with serving([root / MAPPED, root / "plain"], tmp_path_factory.mktemp("maps-server-log")) as base:
        yield base


@pytest.fixture(scope="module")
def chromium(server: str) -> Iterator:
    with headless_chromium() as browser:
        yield browser


def open_maps(chromium, server: str, **context_options) -> object:
    context = chromium.new_context(**({"viewport": {"width": 1100, "height": 900}} | context_options))
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{server}/maps?index={MAPPED}")
    page.wait_for_selector("#map-panel:not([hidden])")
    page.wait_for_function("[...thumbnails.values()].length === map.points.length"
                           " && [...thumbnails.values()].every(i => i.complete && i.naturalWidth)")
    return page


def on_screen(page, position: int) -> tuple[float, float, int]:
    """Where the map draws its `position`th photo, in page coordinates, and that photo's id."""
    x, y, image_id = page.evaluate(f"[...place(map.points[{position}]), map.points[{position}].id]")
    box = page.locator("#map").bounding_box()
    return box["x"] + x, box["y"] + y, image_id


def shown_query(page) -> int:
    page.wait_for_selector("#results li")
    return int(parse_qs(urlparse(page.url).query)["id"][0])


def test_the_map_shows_every_photo_and_a_click_searches_from_it(chromium, server: str, tmp_path: Path) -> None:
    page = open_maps(chromium, server)
    points = httpx.get(f"{server}/api/indexes/{MAPPED}/map").json()["points"]
    assert page.evaluate("map.points.length") == len(points) == len(LABELS) * PER_LABEL
    legend = page.inner_text("#map-legend").split()
    assert legend == sorted(LABELS)
    assert page.get_attribute("#map", "aria-label") == f"map of {len(points)} photos, coloured by label"
    box = page.locator("#map").bounding_box()
    canvas = page.locator("#map").screenshot(path=str(tmp_path / "map.png"))
    from io import BytesIO

    from PIL import Image

    drawn = Image.open(BytesIO(canvas)).convert("RGB")
    assert len(set(drawn.resize((64, 64)).getdata())) > 200  # photos drawn, not a blank or one-colour canvas
    x, y, image_id = on_screen(page, 5)
    page.mouse.move(x, y)
    assert page.get_attribute("#map-pick img", "src").endswith(f"/images/{image_id}/thumbnail")
    assert page.get_attribute("#map-search", "href") == f"/?index={MAPPED}&id={image_id}"
    page.mouse.click(x, y)
    assert shown_query(page) == image_id and page.input_value("#index") == MAPPED
    assert page.get_attribute("#query-image", "src").endswith(f"/images/{image_id}/thumbnail")
    assert box["width"] > 600
    keep_screenshots(tmp_path, "map.png")
    page.context.close()


def test_on_a_touch_screen_a_tap_shows_the_photo_and_a_second_tap_searches(chromium, server: str) -> None:
    page = open_maps(chromium, server, viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the map fits the phone
    assert page.evaluate("getComputedStyle(document.querySelector('#map')).touchAction") == "none"  # no page zoom
    x, y, image_id = on_screen(page, 2)
    page.touchscreen.tap(x, y)
    page.wait_for_selector("#map-pick img")
    assert page.get_attribute("#map-pick img", "src").endswith(f"/images/{image_id}/thumbnail")
    assert urlparse(page.url).path == "/maps"  # the first tap only shows it
    page.touchscreen.tap(x, y)
    assert shown_query(page) == image_id
    page.context.close()


def test_pinch_and_wheel_zoom_the_map_and_keys_walk_it(chromium, server: str) -> None:
    page = open_maps(chromium, server)
    box = page.locator("#map").bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*middle)
    page.mouse.wheel(0, -300)
    assert page.evaluate("view.scale") > 1
    page.mouse.wheel(0, 3000)
    assert page.evaluate("view.scale") == 1
    page.evaluate("""([x, y]) => { // two fingers moving apart (Playwright's touchscreen has one finger)
        const canvas = document.querySelector('#map');
        const touch = (type, id, dx) => canvas.dispatchEvent(new PointerEvent(type, {pointerId: id,
            pointerType: 'touch', clientX: x + dx, clientY: y, bubbles: true, isPrimary: id === 1}));
        touch('pointerdown', 1, -20); touch('pointerdown', 2, 20);
        touch('pointermove', 1, -60); touch('pointermove', 2, 60);
        touch('pointerup', 1, -60); touch('pointerup', 2, 60); }""", list(middle))
    assert page.evaluate("view.scale") == pytest.approx(3, rel=0.01)  # 40 px apart, then 120
    assert urlparse(page.url).path == "/maps"  # a pinch is not a tap

    page.focus("#map")
    page.keyboard.press("ArrowRight")
    first = page.evaluate("picked.id")
    page.keyboard.press("ArrowRight")
    second = page.evaluate("picked.id")
    assert second != first
    assert page.evaluate("id => place(picked)[0] >= place(map.points.find(p => p.id === id))[0]", first)  # rightwards
    page.keyboard.press("Enter")
    assert shown_query(page) == second
    page.context.close()


def test_the_contact_sheets_are_a_grid_of_pictures_and_a_mapless_index_says_how_to_make_one(
        chromium, server: str, tmp_path: Path) -> None:
    page = open_maps(chromium, server, viewport={"width": 1280, "height": 900})
    sheets = page.locator("#artifacts img[alt^='contact sheet of cluster']")
    assert sheets.count() == len(LABELS)
    page.wait_for_function("[...document.querySelectorAll('#artifacts img')].every(i => i.complete && i.naturalWidth)")
    tops = page.eval_on_selector_all("#artifacts li",
                                     "items => items.slice(0, 4).map(i => i.getBoundingClientRect().top)")
    assert len(set(tops)) == 1  # four a row at this width, not a tall list
    assert page.locator("meta[name=viewport]").count() == 1
    page.screenshot(path=str(tmp_path / "maps-page.png"), full_page=True)
    page.select_option("#index", "plain")
    page.wait_for_function("document.querySelector('#status').textContent.includes('no cluster map')")
    assert page.is_hidden("#map-panel") and page.is_hidden("#sheets-panel") and "lookalike map" in page.inner_text(
        "#status")
    keep_screenshots(tmp_path, "maps-page.png")
    page.context.close()
