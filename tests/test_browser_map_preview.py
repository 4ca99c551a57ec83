"""The maps page (issue 26): the photo under the pointer is shown next to it, and the map's colours are map.png's."""

from __future__ import annotations

import httpx
from test_browser_maps import MAPPED, chromium, on_screen, open_maps, server  # noqa: F401

from lookalike.organise.mapping import _palette


def test_the_picked_photo_is_shown_next_to_the_pointer(chromium, server: str) -> None:  # noqa: F811
    page = open_maps(chromium, server)
    viewport = page.viewport_size
    for position in (0, 5, 11):
        x, y, image_id = on_screen(page, position)
        page.mouse.move(x, y)
        assert page.get_attribute("#map-pick img", "src").endswith(f"/images/{image_id}/thumbnail")
        card = page.locator("#map-pick").bounding_box()
        nearest_x = min(max(x, card["x"]), card["x"] + card["width"])
        nearest_y = min(max(y, card["y"]), card["y"] + card["height"])
        assert ((nearest_x - x) ** 2 + (nearest_y - y) ** 2) ** 0.5 < 60  # beside the point, not under the map
        assert not (card["x"] <= x <= card["x"] + card["width"] and card["y"] <= y <= card["y"] + card["height"])
        assert card["y"] + card["height"] <= viewport["height"] and card["x"] + card["width"] <= viewport["width"]
    page.context.close()


def test_the_map_colours_each_label_as_map_png_does(chromium, server: str) -> None:  # noqa: F811
    page = open_maps(chromium, server)
    groups = [point["group"] for point in httpx.get(f"{server}/api/indexes/{MAPPED}/map").json()["points"]]
    assert page.evaluate("map.colours") == _palette(groups)
    page.context.close()
