"""explain and k=auto through the doors: the CLI writes a PNG, HTTP answers image/png and k=auto on a real server on
loopback, and the page's "why similar?" on a result tile shows the picture in Chromium."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DEMO_GALLERY, REPO
from PIL import Image
from test_browser import IMAGES_LOADED, headless_chromium, labelled_gallery, open_search_page, require_browser, serving

from lookalike.index import ImageIndex

INDEX = "clothes"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_gallery(tmp_path_factory.mktemp("explain-gallery"))


@pytest.fixture(scope="module")
def index_folder(gallery: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("explain-index") / INDEX
    with ImageIndex.create(folder) as index:
        index.add_files(sorted(gallery.rglob("*.jpg")))
    return folder


@pytest.fixture(scope="module")
def server(index_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving([index_folder], tmp_path_factory.mktemp("explain-log")) as base:
        yield base


def lookalike(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lookalike", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def two_ids(base: str) -> list[int]:
    images = httpx.get(f"{base}/api/indexes/{INDEX}/images", params={"limit": 2}).json()["images"]
    return [image["id"] for image in images]


def is_side_by_side_png(data: bytes) -> bool:
    picture = Image.open(io.BytesIO(data))
    return picture.format == "PNG" and picture.width > picture.height


def test_cli_explain_writes_a_png_of_a_file_and_an_indexed_id(index_folder: Path, gallery: Path,
                                                              tmp_path: Path) -> None:
    photo = sorted((gallery / "hat").glob("*.jpg"))[0]
    done = lookalike("explain", str(photo), "1", "--index", str(index_folder), "--out", str(tmp_path / "pair.png"))
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and is_side_by_side_png((tmp_path / "pair.png").read_bytes())
    missing = lookalike("explain", str(tmp_path / "nope.jpg"), "1", "--index", str(index_folder))
    assert missing.returncode == 2 and "nope.jpg: file not found" in missing.stderr


def test_cli_search_k_auto_and_a_bad_k_is_named(index_folder: Path, gallery: Path) -> None:
    photo = sorted((gallery / "shoes").glob("*.jpg"))[0]
    done = lookalike("search", str(photo), "--index", str(index_folder), "-k", "auto", "--json")
    assert done.returncode == 0, done.stderr
    bad = lookalike("search", str(photo), "--index", str(index_folder), "-k", "many")
    assert bad.returncode == 2 and "invalid int or auto value: 'many'" in bad.stderr


def test_http_explain_answers_a_png_by_ids_and_by_upload(server: str, gallery: Path) -> None:
    first, second = two_ids(server)
    by_ids = httpx.get(f"{server}/api/indexes/{INDEX}/explain", params={"a": first, "b": second}, timeout=120)
    assert by_ids.status_code == 200 and by_ids.headers["content-type"] == "image/png"
    assert is_side_by_side_png(by_ids.content)
    photo = sorted((gallery / "dress").glob("*.jpg"))[0].read_bytes()
    by_upload = httpx.post(f"{server}/api/indexes/{INDEX}/explain", files={"a_image": ("q.jpg", photo, "image/jpeg")},
                           data={"b": str(second)}, timeout=120)
    assert by_upload.status_code == 200 and by_upload.headers["content-type"] == "image/png"
    both = httpx.post(f"{server}/api/indexes/{INDEX}/explain", files={"a_image": ("q.jpg", photo, "image/jpeg")},
                      data={"a": str(first), "b": str(second)}, timeout=120)
    assert both.status_code == 422 and "give the photo a once" in both.json()["detail"]
    unknown = httpx.get(f"{server}/api/indexes/{INDEX}/explain", params={"a": first, "b": 999999}, timeout=120)
    assert unknown.status_code == 404 and "999999" in unknown.json()["detail"]


def test_http_search_takes_k_auto_and_refuses_other_words(server: str) -> None:
    first, _ = two_ids(server)
    answer = httpx.get(f"{server}/api/indexes/{INDEX}/search", params={"id": first, "k": "auto"}, timeout=120)
    assert answer.status_code == 200 and 1 <= len(answer.json()["matches"]) <= 100
    refused = httpx.get(f"{server}/api/indexes/{INDEX}/search", params={"id": first, "k": "lots"}, timeout=120)
    assert refused.status_code == 422


def test_why_similar_on_a_result_tile_shows_the_picture_and_auto_sends_k_auto(server: str) -> None:
    require_browser()
    with headless_chromium() as chromium:
        page = open_search_page(chromium, server, 120_000)
        page.set_input_files("#file", str(sorted((DEMO_GALLERY / "hat").glob("*.jpg"))[0]))
        page.wait_for_function(IMAGES_LOADED + " && document.querySelectorAll('#results li').length > 0")
        page.locator("#results li").first.get_by_role("button", name="why is").click()
        page.wait_for_function("(() => { const i = document.getElementById('explain-image');"
                               " return i.complete && i.naturalWidth > 0; })()")
        assert page.locator("#explain").is_visible()
        shown = page.evaluate("[document.getElementById('explain-image').naturalWidth,"
                              " document.getElementById('explain-image').naturalHeight]")
        assert shown[0] > shown[1] > 0  # the two photos side by side
        assert "warm regions" in page.locator("#explain-status").inner_text()
        page.click("#explain-close")
        with page.expect_response(lambda r: "/search" in r.url and r.request.method == "POST") as answered:
            page.check("#k-auto")
        assert answered.value.ok and page.locator("#k").is_disabled()
        page.wait_for_function("document.querySelectorAll('#results li').length > 0")
        assert "k=auto" in page.url  # the options sent, kept in the URL so that a reload repeats them
        page.context.close()
