"""The search page in a real browser: `lookalike serve` on loopback, Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import DEMO_GALLERY, REPO

from lookalike.index import ImageIndex
from lookalike.organise.classifier import train_classifier
from lookalike.organise.clustering import cluster_index

CHROMIUM = Path("/usr/bin/chromium")
LABELS = ("dress", "hat", "shoes", "pants")
PER_LABEL = 4
IMAGES_LOADED = "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)"


def require_browser() -> None:
    """Skip with the reason on a user's machine without Chromium or Playwright; fail in CI."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright for Python (pip install playwright)")
    if missing:
        message = "browser test needs " + " and ".join(missing) + "; scripts/install-test-tools installs both"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`lookalike serve` in a subprocess over two indexes of 16 real photos, `clothes` (just indexed) and
    `organised` (labelled, with a classifier and clusters); yields its base URL."""
    require_browser()
    gallery = tmp_path_factory.mktemp("browser-gallery")
    rows = ["path,label"]
    for label in LABELS:
        for photo in sorted((DEMO_GALLERY / label).glob("*.jpg"))[:PER_LABEL]:
            (gallery / label).mkdir(exist_ok=True)
            shutil.copy(photo, gallery / label / photo.name)
            rows.append(f"{label}/{photo.name},{label}")
    (gallery / "labels.csv").write_text("\n".join(rows) + "\n")
    folders = [tmp_path_factory.mktemp("browser-index") / name for name in ("clothes", "organised")]
    for folder in folders:
        with ImageIndex.create(folder) as index:
            index.add_folder(gallery)
            if folder.name == "organised":
                train_classifier(index, gallery / "labels.csv")
                cluster_index(index, k=len(LABELS), sheets=False)
    port = free_port()
    command = [sys.executable, "-m", "lookalike", "serve", "--port", str(port)]
    command += [argument for folder in folders for argument in ("--index", str(folder))]
    with open(tmp_path_factory.mktemp("server-log") / "server.log", "w+") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base, process, log)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=20)


def wait_until_ready(base: str, process: subprocess.Popen, log, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read()}")
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready within {seconds}s")


def test_upload_search_then_click_a_result(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    query = sorted((DEMO_GALLERY / "shoes").glob("*.jpg"))[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        requests_elsewhere: list[str] = []
        searches: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(server) or r.url.startswith("blob:")
                else requests_elsewhere.append(r.url))
        page.on("request", lambda r: searches.append(r.url) if "/search" in r.url else None)
        page.goto(server + "/")
        page.wait_for_selector("#index option", state="attached")
        assert page.locator("#method option").all_inner_texts() == ["cosine", "euclidean"]
        capabilities = httpx.get(f"{server}/api/indexes/clothes").json()["capabilities"]
        assert page.is_visible("#filter") == capabilities["filters"]  # offered only when the index can filter
        assert page.is_visible("#by-class") == capabilities["scopes"]["by_class"]
        assert page.is_visible("#by-cluster") == capabilities["scopes"]["by_cluster"]
        page.fill("#k", "8")

        page.set_input_files("#file", str(query))
        page.wait_for_selector("#results li")
        tiles = read_grid(page)
        assert len(tiles) == 8
        assert tiles[0]["score"] > 0.999 and tiles[0]["label"] == "shoes"  # the photo itself is indexed
        assert [t["label"] for t in tiles[:PER_LABEL]].count("shoes") >= 3
        assert page.inner_text("#query-name") == query.name
        assert "embed" in page.inner_text("#timings")
        page.wait_for_function(IMAGES_LOADED)
        page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

        clicked = page.locator("#results li button").nth(1)
        clicked_id = clicked.get_attribute("data-id")
        clicked.click()
        page.wait_for_function(f"!document.querySelector('#results button[data-id=\"{clicked_id}\"]')")
        after = read_grid(page)
        assert len(after) == 8 and int(clicked_id) not in [t["id"] for t in after]
        assert page.get_attribute("#query-image", "src").endswith(f"/images/{clicked_id}/thumbnail")

        page.select_option("#method", "euclidean")  # re-runs the search from the clicked image
        page.wait_for_function("document.querySelector('#status').textContent.includes('(euclidean)')")
        assert "method=euclidean" in searches[-1] and "metric" not in searches[-1]
        assert all(0 < t["score"] <= 1 for t in read_grid(page))

        page.click("#random")
        page.wait_for_function("document.querySelector('#status').textContent.includes('most similar')")
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.wait_for_function(IMAGES_LOADED)
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=False)
        widths = page.eval_on_selector_all("#results li", "items => items.map(i => i.getBoundingClientRect().right)")
        assert max(widths) <= 390  # the grid fits the phone's width

        page.goto(server + "/maps")
        page.wait_for_function("document.querySelector('#status').textContent.length > 0")
        assert "no cluster map" in page.inner_text("#status")
        browser.close()
    assert requests_elsewhere == []  # nothing fetched from outside the server
    assert (tmp_path / "upload.png").stat().st_size > 10_000
    if os.environ.get("LOOKALIKE_KEEP_SCREENSHOTS"):
        for name in ("upload.png", "phone.png"):
            shutil.copy(tmp_path / name, Path(os.environ["LOOKALIKE_KEEP_SCREENSHOTS"]) / name)


def test_filter_and_scopes_send_the_search_options_by_name(server: str) -> None:
    from playwright.sync_api import sync_playwright

    query = sorted((DEMO_GALLERY / "dress").glob("*.jpg"))[PER_LABEL]  # a dress photo the index does not hold
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(server + "/")
        page.wait_for_selector("#index option", state="attached")
        assert not page.is_visible("#by-class") and not page.is_visible("#by-cluster")  # clothes has neither
        page.select_option("#index", "organised")
        assert page.is_visible("#by-class") and page.is_visible("#by-cluster")
        page.fill("#k", "16")
        page.press("#k", "Tab")
        searched(page, lambda: page.set_input_files("#file", str(query)))
        clicked = read_grid(page)[0]  # from here on the searches start from an indexed image: options in the URL
        options = searched(page, lambda: page.click(f"#results button[data-id=\"{clicked['id']}\"]"))
        assert options == {"k": ["16"], "method": ["cosine"], "id": [str(clicked["id"])]}
        everything = read_grid(page)
        assert len(everything) == len(LABELS) * PER_LABEL - 1 and len({t["label"] for t in everything}) == len(LABELS)

        assert searched(page, lambda: page.check("#by-class"))["by_class"] == ["1"]
        predicted = page.inner_text("#query-class").removeprefix("predicted: ").split()[0]
        assert {t["label"] for t in read_grid(page)} == {predicted}

        searched(page, lambda: page.uncheck("#by-class"))
        options = searched(page, lambda: page.check("#by-cluster"))
        assert options["by_cluster"] == ["1"] and "by_class" not in options
        assert 0 < len(read_grid(page)) < len(everything)

        searched(page, lambda: page.uncheck("#by-cluster"))
        page.fill("#filter", "label=hat, label=shoes")
        options = searched(page, lambda: page.press("#filter", "Enter"))
        assert options["where"] == ["label=hat", "label=shoes"] and "metric" not in options
        expected = [t for t in everything if t["label"] in ("hat", "shoes")]
        assert sorted(t["id"] for t in read_grid(page)) == sorted(t["id"] for t in expected)
        browser.close()


def searched(page, action) -> dict[str, list[str]]:
    """Do something that runs a search; wait until its result is shown; the query parameters it sent."""
    with page.expect_response(lambda r: "/search" in r.url) as response:
        action()
    page.wait_for_function("document.querySelector('#status').textContent !== 'searching…'")
    return parse_qs(urlparse(response.value.url).query)


def read_grid(page) -> list[dict]:
    return page.eval_on_selector_all("#results li button", """buttons => buttons.map(b => ({
        id: Number(b.dataset.id),
        score: Number(b.querySelector('.score').textContent),
        label: b.querySelector('.label').textContent}))""")
