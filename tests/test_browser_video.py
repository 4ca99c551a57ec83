"""A video's frame on the search page, in a real browser: the tile shows the frame's time, and clicking it opens the
viewer on a <video> of the video, at that time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import headless_chromium, open_search_page, require_browser, serving
from videos import write_still, write_video

from lookalike.index import ImageIndex

pytest.importorskip("av")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`lookalike serve` over an index of one video (VP9: what every Chromium build plays) and one photo."""
    require_browser()
    media = tmp_path_factory.mktemp("browser-media")
    write_video(media / "clip.webm", [0, 1, 2])
    write_still(media / "photo.png", 3)
    folder = tmp_path_factory.mktemp("browser-video") / "films"
    with ImageIndex.create(folder) as index:
        index.add_folder(media)
    with serving([folder], tmp_path_factory.mktemp("server-log")) as base:
        yield base


def test_a_frame_result_shows_its_time_and_opens_the_video_there(server: str, tmp_path: Path) -> None:
    query = write_still(tmp_path / "scene2.png", 2)
    with headless_chromium() as chromium:
        page = open_search_page(chromium, server, 30_000)
        page.set_input_files("#file", str(query))
        page.wait_for_selector("#results li")
        first = page.locator("#results li").first
        assert first.locator(".frame-time").inner_text() == "▶ 0:04.0"
        assert "clip.webm @ 0:04.0" in first.locator("button.open").get_attribute("title")
        photo = page.locator("#results li", has=page.locator("img[alt*='photo.png']"))
        assert photo.locator(".frame-time").count() == 0
        first.locator("button.open").click()
        page.wait_for_selector("#viewer-video", state="visible")
        assert page.locator("#viewer-image").is_hidden()
        page.wait_for_function("() => { const v = document.querySelector('#viewer-video');"
                               " return v.readyState >= 1 && Math.abs(v.currentTime - 4) < 0.05; }")
        assert page.locator("#viewer-title").inner_text().endswith("clip.webm @ 0:04.0")
        assert page.locator("#viewer-original").get_attribute("href").endswith("/video#t=4")
        page.screenshot(path=str(tmp_path / "video-viewer.png"))
        page.locator("#viewer-close").click()
        photo.locator("button.open").click()  # a photo: its picture, and the video stopped and hidden
        page.wait_for_selector("#viewer-image", state="visible")
        assert page.locator("#viewer-video").is_hidden()
        assert page.evaluate("document.querySelector('#viewer-video').paused")
