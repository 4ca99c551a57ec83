"""The search page in a real browser: `lookalike serve` on loopback, Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import re
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


@pytest.fixture(scope="module")
def chromium(server: str) -> Iterator:
    """One headless Chromium for the tests below; each gets its own page (a fresh context) from `page`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, server: str) -> Iterator:
    """The search page, loaded, with `page.searches`: the search requests it has sent (method and URL)."""
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.searches = []
    page.on("request", lambda r: page.searches.append(f"{r.method} {r.url}") if "/search" in r.url else None)
    # file dialogs intercepted from the start: Playwright turns interception on and off with its listeners,
    # and a dialog opened in between is a native one that never reports, and blocks the next
    page.on("filechooser", lambda chooser: None)
    page.goto(server + "/")
    page.wait_for_selector("#index option", state="attached")
    yield page
    context.close()


def test_label_filter_applies_on_enter_whatever_the_case_and_names_the_labels_there_are(page) -> None:
    page.select_option("#index", "organised")
    page.fill("#k", "16")
    searched(page, lambda: page.click("#random"))
    page.fill("#filter", "Label=HAT")
    options = searched(page, lambda: page.press("#filter", "Enter"))
    assert options["where"] == ["label=hat"]  # the index's own spelling is sent
    assert {t["label"] for t in read_grid(page)} == {"hat"}
    assert len(page.searches) == 2  # Enter (and the change it causes) sent one search

    page.fill("#filter", "label=Skirt")
    page.press("#filter", "Enter")
    message = page.inner_text("#status")
    assert "Skirt" in message and all(f"{label} {PER_LABEL}" in message for label in LABELS)  # values and counts
    assert read_grid(page) == [] and len(page.searches) == 2  # refused on the page, old results gone

    page.fill("#filter", "colour=red")
    page.press("#filter", "Enter")
    assert "colour" in page.inner_text("#status") and "label (dress, hat" in page.inner_text("#status")
    page.fill("#filter", "LABEL=Shoes, label=PANTS")
    options = searched(page, lambda: page.press("#filter", "Enter"))  # the same query, now with a filter it knows
    assert options["where"] == ["label=shoes", "label=pants"]
    assert {t["label"] for t in read_grid(page)} == {"shoes", "pants"}


def test_keyboard_only_upload_focus_ring_and_alt_texts(page, tmp_path: Path) -> None:
    query = sorted((DEMO_GALLERY / "hat").glob("*.jpg"))[0]
    page.select_option("#index", "organised")
    page.focus("#drop")
    page.keyboard.press("Tab")  # "choose an image" is a button of its own, next after the drop zone
    assert page.evaluate("document.activeElement.id") == "choose"
    choose = page.get_by_role("button", name="choose an image")
    assert choose.is_visible()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    searched(page, lambda: chooser.value.set_files(str(query)))
    assert page.evaluate("document.activeElement.id") == "results-heading"  # focus continues at the results
    assert page.get_by_role("heading", name="Most similar images").is_visible()
    alts = page.eval_on_selector_all("#results img", "images => images.map(i => i.alt)")
    labels = [t["label"] for t in read_grid(page)]
    assert len(alts) == 12 and all(re.fullmatch(f"{label} — [0-9a-f]{{4}}….jpg", alt)  # "hat — 06a0….jpg"
                                   for alt, label in zip(alts, labels, strict=True))
    assert page.get_attribute("#query-image", "alt") == f"query: {query.name}"

    for key in ("Enter", " "):  # Enter and Space on the drop zone open the file dialog too
        page.focus("#drop")
        with page.expect_file_chooser():
            page.keyboard.press(key)

    page.focus("#results-heading")
    page.wait_for_function(IMAGES_LOADED)
    tile = page.locator("#results li").first
    unfocused = tile.screenshot(path=str(tmp_path / "tile.png"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('li') === document.querySelector('#results li')")
    focused = tile.screenshot(path=str(tmp_path / "tile-focused.png"))
    box = tile.bounding_box()
    changed = changed_pixels(unfocused, focused)
    assert changed > 2 * (box["width"] + box["height"])  # a ring around the tile, at least a pixel wide, is drawn
    page.screenshot(path=str(tmp_path / "keyboard.png"))
    keep_screenshots(tmp_path, "tile.png", "tile-focused.png", "keyboard.png")


def test_a_photo_dropped_anywhere_on_the_window_is_searched(page) -> None:
    query = sorted((DEMO_GALLERY / "pants").glob("*.jpg"))[0]
    dropped = page.evaluate_handle("""([name, bytes]) => {
        const files = new DataTransfer();
        files.items.add(new File([new Uint8Array(bytes)], name, {type: "image/jpeg"}));
        return files; }""", [query.name, list(query.read_bytes())])
    over = page.evaluate("""files => !document.querySelector('header').dispatchEvent(
        new DragEvent('dragover', {dataTransfer: files, bubbles: true, cancelable: true}))""", dropped)
    assert over  # the page takes the drag over its header: the browser would otherwise open the file in a tab
    with page.expect_response(lambda r: "/search" in r.url, timeout=5_000):
        page.dispatch_event("#results", "drop", {"dataTransfer": dropped})
    page.wait_for_selector("#results li")
    assert page.inner_text("#query-name") == query.name and read_grid(page)[0]["score"] > 0.999


def test_an_error_or_another_index_clears_the_old_query_and_results(page, tmp_path: Path) -> None:
    photo = sorted((DEMO_GALLERY / "dress").glob("*.jpg"))[0]
    searched(page, lambda: page.set_input_files("#file", str(photo)))
    assert read_grid(page) and page.is_visible("#query")
    notes = {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"a text file, not a photo"}
    searched(page, lambda: page.set_input_files("#file", files=[notes]))
    assert "not an image" in page.inner_text("#status")
    assert read_grid(page) == [] and not page.is_visible("#query") and not page.is_visible("#results-heading")

    searched(page, lambda: page.click("#random"))
    assert read_grid(page) and page.is_visible("#query")
    page.select_option("#index", "organised")
    assert read_grid(page) == [] and not page.is_visible("#query")


def test_a_file_above_the_limit_is_refused_before_uploading(page) -> None:
    searched(page, lambda: page.click("#random"))
    page.evaluate("""() => { // made in the page: 25 MB through the driver would take seconds
        const chosen = new DataTransfer();
        chosen.items.add(new File([new Uint8Array([0xff, 0xd8, 0xff]), new ArrayBuffer(25 * 1024 * 1024 - 3)],
                                  "huge.jpg", {type: "image/jpeg"}));
        const input = document.querySelector("#file");
        input.files = chosen.files;
        input.dispatchEvent(new Event("change")); }""")
    assert page.inner_text("#status") == "huge.jpg: 25.0 MB; the limit is 20 MB"
    assert len(page.searches) == 1 and page.searches[0].startswith("GET ")  # only the random search was sent
    assert read_grid(page) == [] and not page.is_visible("#query")


def test_k_above_the_maximum_is_lowered_and_k_zero_or_empty_clears_the_results(page) -> None:
    searched(page, lambda: page.click("#random"))
    page.fill("#k", "5000")
    options = searched(page, lambda: page.press("#k", "Enter"))
    assert options["k"] == ["1000"] and page.input_value("#k") == "1000"
    assert "most similar" in page.inner_text("#status") and "lowered from 5000 to 1000" in page.inner_text("#status")
    assert len(read_grid(page)) == len(LABELS) * PER_LABEL - 1  # every other image of the index
    for k in ("0", ""):
        page.fill("#k", k)
        page.press("#k", "Enter")
        assert "k must be a whole number from 1 to 1000" in page.inner_text("#status")
        assert read_grid(page) == [] and not page.is_visible("#query")
    assert len(page.searches) == 2
    page.fill("#k", "3")
    searched(page, lambda: page.press("#k", "Enter"))  # the query is kept: a valid k searches again
    assert len(read_grid(page)) == 3


def changed_pixels(before: bytes, after: bytes) -> int:
    from io import BytesIO

    from PIL import Image, ImageChops

    first, second = (Image.open(BytesIO(shot)).convert("RGB") for shot in (before, after))
    return sum(ImageChops.difference(first, second).convert("L").histogram()[25:])  # pixels changed by over 24


def keep_screenshots(folder: Path, *names: str) -> None:
    if os.environ.get("LOOKALIKE_KEEP_SCREENSHOTS"):
        for name in names:
            shutil.copy(folder / name, Path(os.environ["LOOKALIKE_KEEP_SCREENSHOTS"]) / name)


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


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".opblock-summary"), ("/redoc", "[role=menuitem]")])
def test_api_docs_render_offline_from_files_the_server_ships(chromium, server: str, path: str, rendered: str) -> None:
    """Swagger UI and ReDoc come from the package, not a CDN: with every other host blocked they still render.
    (ReDoc's footer credit links an image on its vendor's site; it is blocked here and the page does not need it.)"""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    outside: list[str] = []

    def loopback_only(route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            if route.request.resource_type != "image":
                outside.append(route.request.url)
            route.abort()

    page.route("**/*", loopback_only)
    page.goto(server + path)
    page.wait_for_selector(rendered)
    assert page.locator(rendered).count() >= 5  # the operations (Swagger) or the menu entries (ReDoc)
    assert outside == []
    context.close()
