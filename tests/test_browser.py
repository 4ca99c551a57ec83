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
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import DEMO_GALLERY, REPO

from lookalike.confidence import CLASS_PROBABILITY_FLOOR
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
    gallery = labelled_gallery(tmp_path_factory.mktemp("browser-gallery"))
    folders = [tmp_path_factory.mktemp("browser-index") / name for name in ("clothes", "organised")]
    for folder in folders:
        with ImageIndex.create(folder) as index:
            if folder.name == "clothes":  # the photos only: add_folder would read the gallery's labels.csv
                index.add_files(sorted(gallery.rglob("*.jpg")))
            else:
                index.add_folder(gallery)
            if folder.name == "organised":
                train_classifier(index, gallery / "labels.csv")
                cluster_index(index, k=len(LABELS), sheets=False)
    with serving(folders, tmp_path_factory.mktemp("server-log")) as base:
        yield base


def labelled_gallery(folder: Path) -> Path:
    """PER_LABEL real photos of each of LABELS copied into `folder`, with a labels.csv."""
    rows = ["path,label"]
    for label in LABELS:
        for photo in sorted((DEMO_GALLERY / label).glob("*.jpg"))[:PER_LABEL]:
            (folder / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, folder / label / photo.name)
            rows.append(f"{label}/{photo.name},{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@contextmanager
def serving(folders: list[Path], log_folder: Path) -> Iterator[str]:
    """`lookalike serve` on a free loopback port over these index folders, until the block ends: its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "lookalike", "serve", "--port", str(port)]
    command += [argument for folder in folders for argument in ("--index", str(folder))]
    with open(log_folder / "server.log", "w+") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base, process, log)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=20)


def open_filters(page) -> None:
    """Unfold the Filters panel, folded until a person opens it (results first) or a link carries a filter."""
    if not page.eval_on_selector("#filter-field", "panel => panel.open"):
        page.click("#filter-field summary")


def open_search_page(chromium, base: str, timeout_ms: int, before_load=None):
    """A fresh context's search page at 1000x900, with `page.searches`: the search requests it has sent
    (method and URL); `before_load(page)` runs before the page is loaded."""
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.searches = []
    page.on("request", lambda r: page.searches.append(f"{r.method} {r.url}") if "/search" in r.url else None)
    if before_load is not None:
        before_load(page)
    page.goto(base + "/")
    page.wait_for_selector("#index option", state="attached")
    return page


@contextmanager
def headless_chromium() -> Iterator:
    """Debian's Chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


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
        assert page.is_visible("#filter-field") == capabilities["filters"]  # offered only when the index can filter
        assert not page.is_visible("#filter")  # folded: the results come first
        assert page.is_visible("#by-class") == capabilities["scopes"]["by_class"]
        assert page.is_visible("#by-cluster") == capabilities["scopes"]["by_cluster"]
        page.fill("#k", "8")

        page.set_input_files("#file", str(query))
        page.wait_for_selector("#results li")
        tiles = read_grid(page)
        assert len(tiles) == 8
        assert tiles[0]["id"] == indexed_id(server, "clothes", query)  # the photo itself is indexed: found first
        assert tiles[0]["score"] > 0.95 and tiles[0]["label"] == "shoes"  # (not 1: expansion may move vectors)
        assert [t["label"] for t in tiles[:PER_LABEL]].count("shoes") >= 3
        assert page.inner_text("#query-name") == query.name
        assert "embed" in page.text_content("#timings")  # folded under "how is this ranked?"
        page.wait_for_function(IMAGES_LOADED)
        page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)

        clicked = page.locator("#results li").nth(1)
        clicked_id = clicked.get_attribute("data-id")
        clicked.locator(".similar").click()
        page.wait_for_function(f"!document.querySelector('#results li[data-id=\"{clicked_id}\"]')")
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
        options = searched(page, lambda: page.click(f"#results li[data-id=\"{clicked['id']}\"] .similar"))
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
        open_filters(page)
        page.fill("#filter", "label=hat, label=shoes")
        options = searched(page, lambda: page.press("#filter", "Enter"))
        assert options["where"] == ["label=hat", "label=shoes"] and "metric" not in options
        expected = [t for t in everything if t["label"] in ("hat", "shoes")]
        assert sorted(t["id"] for t in read_grid(page)) == sorted(t["id"] for t in expected)
        browser.close()


@pytest.fixture(scope="module")
def chromium(server: str) -> Iterator:
    """One headless Chromium for the tests below; each gets its own page (a fresh context) from `page`."""
    with headless_chromium() as browser:
        yield browser


@pytest.fixture
def page(chromium, server: str) -> Iterator:
    """The search page, loaded, with `page.searches`: the search requests it has sent (method and URL)."""
    # file dialogs intercepted from the start: Playwright turns interception on and off with its listeners,
    # and a dialog opened in between is a native one that never reports, and blocks the next
    page = open_search_page(chromium, server, 10_000, lambda p: p.on("filechooser", lambda chooser: None))
    yield page
    page.context.close()


def test_label_filter_applies_on_enter_whatever_the_case_and_names_the_labels_there_are(page) -> None:
    page.select_option("#index", "organised")
    page.fill("#k", "16")
    searched(page, lambda: page.click("#random"))
    open_filters(page)
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
    assert page.inner_text("#query-name") == query.name
    assert read_grid(page)[0]["id"] == indexed_id(server_of(page), "clothes", query)


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
    return page.eval_on_selector_all("#results li", """items => items.map(item => ({
        id: Number(item.dataset.id),
        score: Number(item.querySelector('.score').textContent),
        label: item.querySelector('.label').textContent}))""")


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


# --- every way to give a query -------------------------------------------------------------------------------
def png_of(photo: Path) -> list[int]:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.open(photo).save(buffer, "PNG")
    return list(buffer.getvalue())


def test_an_image_pasted_with_ctrl_v_is_searched(chromium, server: str) -> None:
    """A real paste: the photo written to the browser's clipboard, then Ctrl+V on the page (no field focused)."""
    context = chromium.new_context(viewport={"width": 1000, "height": 900},
                                   permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(server + "/")
    page.wait_for_selector("#index option", state="attached")
    photo = sorted((DEMO_GALLERY / "hat").glob("*.jpg"))[0]  # indexed: its own copy is the best match
    page.evaluate("""async bytes => navigator.clipboard.write([new ClipboardItem({
        "image/png": new Blob([new Uint8Array(bytes)], {type: "image/png"})})])""", png_of(photo))
    searched(page, lambda: page.keyboard.press("Control+V"))
    assert page.inner_text("#query-name") == "pasted image.png"
    best = read_grid(page)[0]
    assert best["id"] == indexed_id(server, "clothes", photo) and best["score"] > 0.95  # PNG of the same picture
    page.fill("#k", "5")
    searched(page, lambda: page.keyboard.press("Control+V"))  # pasted into the k field: still the photo, not text
    assert page.input_value("#k") == "5" and len(read_grid(page)) == 5
    context.close()


def test_the_query_and_a_spinner_show_at_once_before_the_answer(page) -> None:
    held = []
    page.route("**/search*", lambda route: held.append(route))  # the answer waits until the test lets it go
    photo = sorted((DEMO_GALLERY / "shoes").glob("*.jpg"))[1]
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.querySelector('#query-image').complete"
                           " && document.querySelector('#query-image').naturalWidth > 0")
    assert page.is_visible("#query") and page.inner_text("#query-name") == photo.name  # before any answer
    assert page.inner_text("#status") == "searching…"
    spinner = page.evaluate("""() => { const s = getComputedStyle(document.querySelector('#status'), '::before');
        return {shown: s.content !== 'none' && parseFloat(s.width) > 8, turning: s.animationName}; }""")
    assert spinner == {"shown": True, "turning": "spin"}
    while not held:  # the request reaches the route while the page runs on
        page.wait_for_timeout(20)
    held[0].continue_()
    page.wait_for_selector("#results li")
    assert page.evaluate("getComputedStyle(document.querySelector('#status'), '::before').content") == "none"
    assert page.get_attribute("#results", "aria-busy") == "false"


# --- the viewer ------------------------------------------------------------------------------------------------
def test_the_viewer_shows_a_result_large_with_its_path_labels_and_score_and_browses_by_keys(page, tmp_path: Path):
    page.select_option("#index", "organised")
    searched(page, lambda: page.click("#random"))
    grid = read_grid(page)
    page.locator("#results li .open").nth(1).click()
    viewer = page.locator("#viewer")
    assert viewer.is_visible() and page.evaluate("document.querySelector('#viewer').open")
    page.wait_for_function("document.querySelector('#viewer-image').src.endsWith('/file')")  # the original, not
    page.wait_for_function("document.querySelector('#viewer-image').naturalWidth > 256")  # the 256-px thumbnail
    title = page.inner_text("#viewer-title")
    assert re.fullmatch(rf"{grid[1]['label']}/[0-9a-f-]+\.jpg", title)  # folder/file: no server path
    assert page.inner_text("#viewer-place").startswith(f"2 of {len(grid)} · similarity {grid[1]['score']:.3f}")
    assert f"label\n{grid[1]['label']}" in page.inner_text("#viewer-labels")
    original = page.get_attribute("#viewer-original", "href")
    assert original.endswith(f"/images/{grid[1]['id']}/file")
    assert httpx.get(server_of(page) + original).headers["content-type"] == "image/jpeg"
    page.screenshot(path=str(tmp_path / "viewer.png"))

    page.keyboard.press("ArrowRight")
    assert page.inner_text("#viewer-place").startswith(f"3 of {len(grid)} · similarity {grid[2]['score']:.3f}")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.inner_text("#viewer-place").startswith(f"1 of {len(grid)}")
    page.keyboard.press("ArrowLeft")  # from the first to the last
    assert page.inner_text("#viewer-place").startswith(f"{len(grid)} of {len(grid)}")
    page.keyboard.press("Escape")
    assert not viewer.is_visible()
    assert page.evaluate("document.activeElement.closest('li')?.dataset.id") == str(grid[-1]["id"])  # focus back

    page.locator("#results li .open").nth(3).press("Enter")  # the keyboard opens it too
    options = searched(page, lambda: page.click("#viewer-search"))
    assert options["id"] == [str(grid[3]["id"])] and not viewer.is_visible()
    assert page.get_attribute("#query-image", "src").endswith(f"/images/{grid[3]['id']}/thumbnail")
    keep_screenshots(tmp_path, "viewer.png")


def test_result_tiles_show_hover_and_focus(page, tmp_path: Path) -> None:
    searched(page, lambda: page.click("#random"))
    page.wait_for_function(IMAGES_LOADED)
    page.mouse.move(0, 0)
    tile = page.locator("#results li").nth(2)
    resting = tile.screenshot()
    tile.hover()
    hovered = tile.screenshot()
    box = tile.bounding_box()
    assert changed_pixels(resting, hovered) > box["width"]  # the border takes the accent colour, the photo dims
    page.mouse.move(0, 0)
    similar = tile.locator(".similar")
    before = tile.screenshot()
    similar.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focus by keyboard: :focus-visible
    assert page.evaluate("document.activeElement.matches('#results .similar:focus-visible')")
    after = tile.screenshot(path=str(tmp_path / "tile-similar-focused.png"))
    button = similar.bounding_box()
    assert changed_pixels(before, after) > 2 * (button["width"] + button["height"])  # a ring around the button
    keep_screenshots(tmp_path, "tile-similar-focused.png")


def indexed_id(server: str, index: str, photo: Path) -> int:
    """The id an index gave its copy of a demo photo (found by file name)."""
    images = httpx.get(f"{server}/api/indexes/{index}/images?limit=1000").json()["images"]
    return next(image["id"] for image in images if Path(image["path"]).name == photo.name)


def server_of(page) -> str:
    return re.match(r"https?://[^/]+", page.url).group(0)


# --- the search in the URL -------------------------------------------------------------------------------------
def test_the_search_is_in_the_url_so_reload_back_and_a_shared_link_repeat_it(chromium, page) -> None:
    page.select_option("#index", "organised")
    searched(page, lambda: page.click("#random"))
    first = read_grid(page)
    searched(page, lambda: page.select_option("#method", "euclidean"))
    open_filters(page)
    searched(page, lambda: page.click(".chip[data-name=label][data-value=hat]"))
    hats = read_grid(page)
    options = searched(page, lambda: page.click(".chip[data-name=label][data-value=shoes]"))
    chosen = read_grid(page)
    state = parse_qs(urlparse(page.url).query)
    assert state == {"index": ["organised"], "id": options["id"], "k": ["12"], "method": ["euclidean"],
                     "where": ["label=hat", "label=shoes"]}

    searched(page, lambda: page.reload())
    assert read_grid(page) == chosen
    assert page.input_value("#method") == "euclidean" and page.input_value("#filter") == "label=hat, label=shoes"
    assert page.get_attribute(".chip[data-value=shoes]", "aria-pressed") == "true"
    searched(page, lambda: page.go_back())  # one step back: the shoes chip not yet pressed
    assert read_grid(page) == hats and page.input_value("#filter") == "label=hat"
    assert page.get_attribute(".chip[data-value=shoes]", "aria-pressed") == "false"
    searched(page, lambda: page.go_back())
    searched(page, lambda: page.go_back())
    assert read_grid(page) == first and page.input_value("#method") == "cosine"

    shared = chromium.new_context(viewport={"width": 1000, "height": 900})  # another visitor, given the link
    other = shared.new_page()
    searched(other, lambda: other.goto(page.url.split("?")[0] + "?" + "&".join(
        f"{name}={value}" for name, values in state.items() for value in values)))
    assert read_grid(other) == chosen and other.input_value("#index") == "organised"
    assert other.is_visible(".chip[data-value=shoes]")  # a link with filters opens the panel that shows them
    shared.close()


def test_an_uploaded_query_survives_a_reload_but_its_link_elsewhere_says_why_it_cannot(chromium, page) -> None:
    photo = sorted((DEMO_GALLERY / "pants").glob("*.jpg"))[PER_LABEL]  # not indexed
    searched(page, lambda: page.set_input_files("#file", str(photo)))
    uploaded = read_grid(page)
    token = parse_qs(urlparse(page.url).query)["upload"][0]
    assert re.fullmatch("[0-9a-f]{16}", token)
    searched(page, lambda: page.reload())
    assert read_grid(page) == uploaded and page.inner_text("#query-name") == photo.name
    assert page.searches[-1].startswith("POST ")  # the photo was sent again, from this browser's store

    elsewhere = chromium.new_context()
    other = elsewhere.new_page()
    other.goto(page.url)
    other.wait_for_function("document.querySelector('#status').textContent.includes('another browser')")
    assert read_grid(other) == [] and not other.is_visible("#query")
    elsewhere.close()


# --- filters people can see --------------------------------------------------------------------------------------
def test_label_chips_show_values_with_counts_and_filter_by_several_at_once_in_any_case(page) -> None:
    page.select_option("#index", "organised")
    chips = page.eval_on_selector_all(".chip[data-name=label]", "chips => chips.map(c => c.textContent)")
    assert chips == [f"{label}{PER_LABEL}" for label in sorted(LABELS)]  # "dress4": value and count
    assert page.locator(".chip[data-name=cluster]").count() == len(LABELS)  # the clusters are labels too
    page.fill("#k", "16")
    searched(page, lambda: page.click("#random"))
    open_filters(page)
    options = searched(page, lambda: page.click(".chip[data-value=hat]"))
    assert options["where"] == ["label=hat"] and {t["label"] for t in read_grid(page)} == {"hat"}
    options = searched(page, lambda: page.click(".chip[data-value=dress]"))
    assert options["where"] == ["label=hat", "label=dress"]
    assert {t["label"] for t in read_grid(page)} == {"hat", "dress"}
    pressed = page.eval_on_selector_all(".chip[aria-pressed=true]", "chips => chips.map(c => c.dataset.value)")
    assert pressed == ["dress", "hat"] and page.inner_text("#filter-field summary") == "Filters (2)"
    options = searched(page, lambda: page.click(".chip[data-value=hat]"))  # pressed again: released
    assert options["where"] == ["label=dress"]
    page.fill("#filter", "LABEL=Shoes")
    assert page.get_attribute(".chip[data-value=shoes]", "aria-pressed") == "true"  # typed, in another case
    assert page.get_attribute(".chip[data-value=dress]", "aria-pressed") == "false"
    options = searched(page, lambda: page.press("#filter", "Enter"))
    assert options["where"] == ["label=shoes"]
    page.select_option("#index", "clothes")  # no labels: no chips, and the filter of the other index is gone
    assert page.locator(".chip").count() == 0 and page.input_value("#filter") == ""


# --- what a method means, and when an answer is doubtful -----------------------------------------------------------
def test_each_method_is_explained_in_one_line(page) -> None:
    assert page.text_content("#method-help").startswith("cosine: how closely")
    page.select_option("#method", "euclidean")
    assert page.text_content("#method-help").startswith("Euclidean: the straight-line distance")
    capabilities = httpx.get(f"{server_of(page)}/api/indexes/clothes").json()["capabilities"]
    chosen = capabilities["expand"]  # and the expansion chosen, in the index's own words
    assert f"Expansion {chosen}: {capabilities['expansions'][chosen]}." in page.text_content("#method-help")


def noise_png(path: Path) -> Path:
    """Coloured noise: a picture of nothing the index holds."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(path)
    return path


def test_a_weak_best_match_or_an_unsure_classifier_is_said_to_be_doubtful(page, tmp_path: Path) -> None:
    indexed = sorted((DEMO_GALLERY / "dress").glob("*.jpg"))[0]
    searched(page, lambda: page.set_input_files("#file", str(indexed)))
    note = page.inner_text("#confidence")  # its own copy is indexed: a confident answer, and it says so
    assert "same photo" in note and not page.eval_on_selector("#confidence", "e => e.classList.contains('doubtful')")
    assert read_grid(page)[0]["score"] >= 0.999 and page.is_visible("#results li:first-child .same")
    searched(page, lambda: page.set_input_files("#file", str(noise_png(tmp_path / "noise.png"))))
    note = page.inner_text("#confidence")
    assert page.is_visible("#confidence") and "does not hold" in note
    assert page.eval_on_selector("#confidence", "e => e.classList.contains('doubtful')")
    page.screenshot(path=str(tmp_path / "weak-match.png"))

    page.select_option("#index", "organised")
    page.check("#by-class")
    searched(page, lambda: page.set_input_files("#file", str(tmp_path / "noise.png")))
    top = max(int(p.rstrip("%")) for p in re.findall(r"\d+%", page.inner_text("#query-class")))
    unsure = "classifier is unsure" in page.inner_text("#confidence")
    note = page.inner_text("#confidence")  # noise: nothing the class allows is close, or the classifier is unsure
    assert ("is close to this photo" in note) or unsure == (top < CLASS_PROBABILITY_FLOOR * 100)
    keep_screenshots(tmp_path, "weak-match.png")


# --- dark mode, the phone, and what visitors may not see --------------------------------------------------------
def luminance(css: str) -> float:
    red, green, blue = (int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3])
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


READABLE = """() => {
    const colours = (selector) => { const s = getComputedStyle(document.querySelector(selector));
        return [s.color, s.backgroundColor]; };
    const page = getComputedStyle(document.body).backgroundColor;
    const panel = getComputedStyle(document.querySelector('#query')).backgroundColor;
    return {page, text: [getComputedStyle(document.body).color, page],
            help: [getComputedStyle(document.querySelector('#method-help')).color, page],
            choose: colours('#choose'), random: colours('#random'), chip: colours('.chip'),
            pressed: colours('.chip[aria-pressed=true]'),
            caption: [getComputedStyle(document.querySelector('#results .label')).color, panel],
            note: colours('#confidence')};
}"""


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_page_follows_the_systems_colour_scheme_and_stays_readable(chromium, server: str, scheme: str,
                                                                      tmp_path: Path) -> None:
    context = chromium.new_context(viewport={"width": 1000, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(server + "/?index=organised&where=label%3Dhat")
    page.wait_for_selector(".chip[aria-pressed=true]")
    searched(page, lambda: page.set_input_files("#file", str(noise_png(tmp_path / "noise.png"))))  # shows the note
    page.wait_for_function(IMAGES_LOADED)
    colours = page.evaluate(READABLE)
    assert (luminance(colours.pop("page")) < 0.05) == (scheme == "dark")
    for name, (foreground, background) in colours.items():
        assert contrast(foreground, background) >= 4.5, f"{name}: {foreground} on {background}"
    page.screenshot(path=str(tmp_path / f"{scheme}.png"))
    keep_screenshots(tmp_path, f"{scheme}.png")
    context.close()


def test_on_a_phone_the_results_start_on_the_first_screen(chromium, server: str, tmp_path: Path) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                   has_touch=True)
    page = context.new_page()
    page.goto(server + "/?index=organised")  # the index with the most controls: scopes, labels, clusters
    page.wait_for_selector("#index option", state="attached")
    photo = sorted((DEMO_GALLERY / "shoes").glob("*.jpg"))[PER_LABEL]  # not indexed: a note may show too
    searched(page, lambda: page.set_input_files("#file", str(photo)))
    page.wait_for_function(IMAGES_LOADED)
    page.wait_for_function("window.scrollY === 0")
    row = page.eval_on_selector_all("#results li", "items => items.slice(0, 2).map(i => i.getBoundingClientRect())")
    assert len(row) == 2 and row[0]["top"] == row[1]["top"]  # two a row
    assert row[0]["bottom"] <= 844, "the first row of results is below the first screen"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    page.screenshot(path=str(tmp_path / "phone-first-screen.png"))
    keep_screenshots(tmp_path, "phone-first-screen.png")
    context.close()


def test_no_server_path_is_shown_to_visitors(page) -> None:
    info = httpx.get(f"{server_of(page)}/api/indexes/organised/images?limit=1").json()["images"][0]
    gallery = str(Path(info["path"]).parent.parent)  # where the server keeps the photos
    index_folder = httpx.get(f"{server_of(page)}/api/indexes/organised").json()["folder"]
    page.select_option("#index", "organised")
    searched(page, lambda: page.click("#random"))
    page.locator("#results li .open").first.click()
    page.wait_for_selector("#viewer[open]")
    shown = page.content()  # the text and every attribute: titles, alt texts, names
    assert gallery not in shown and index_folder not in shown
    assert page.inner_text("#query-name").count("/") == 1  # folder/file


def test_every_control_has_a_name_and_every_image_a_meaningful_alt(page) -> None:
    """Playwright's accessibility snapshot (what a screen reader is given): roles and names, asserted."""
    page.select_option("#index", "organised")
    searched(page, lambda: page.click("#random"))
    page.wait_for_function(IMAGES_LOADED)
    snapshots = [page.locator("body").aria_snapshot()]
    page.locator("#results li .open").first.click()
    page.wait_for_function("document.querySelector('#viewer-image').naturalWidth > 0")
    snapshots.append(page.locator("#viewer").aria_snapshot())
    seen: dict[str, list[str]] = {}
    for line in "\n".join(snapshots).splitlines():
        found = re.match(r'\s*- (button|combobox|spinbutton|checkbox|textbox|link|img)(?: "([^"]*)")?', line)
        if found:
            seen.setdefault(found.group(1), []).append(found.group(2) or "")
    assert all(seen.values()) and len(seen["img"]) >= 13 and len(seen["button"]) >= 2 * 12
    unnamed = {role: names.count("") for role, names in seen.items() if "" in names}
    assert unnamed == {}, f"controls without a name: {unnamed}"
    uuid_like = [name for name in seen["img"] if re.fullmatch(r"[0-9a-f-]{20,}(\.\w+)?", name)]
    assert uuid_like == []
    for role, name in (("combobox", "Index"), ("combobox", "Method"), ("spinbutton", "k"),
                       ("button", "choose an image"), ("button", "random"), ("button", "search from this"),
                       ("link", "open original"), ("button", "next result"), ("button", "previous result")):
        assert name in seen[role], f"no {role} named {name!r}"


def test_choosing_an_index_fetches_its_labels_as_they_are_now(page) -> None:
    """Labels another process wrote while the page was open appear when their index is chosen (this test runs last:
    it labels `clothes`)."""
    assert page.input_value("#index") == "clothes" and page.locator(".chip").count() == 0  # no labels yet
    folder = httpx.get(f"{server_of(page)}/api/indexes/clothes").json()["folder"]
    with ImageIndex.open(folder) as index:
        index.set_labels({image_id: {"colour": "Red"} for image_id in index.ids().tolist()[:3]})
    page.select_option("#index", "organised")
    page.select_option("#index", "clothes")
    open_filters(page)
    page.wait_for_selector(".chip[data-name=colour]")
    assert page.inner_text(".chip[data-name=colour]").split() == ["Red", "3"]
    page.fill("#k", "16")
    searched(page, lambda: page.click("#random"))
    options = searched(page, lambda: page.click(".chip[data-name=colour]"))
    assert options["where"] == ["colour=Red"] and 2 <= len(read_grid(page)) <= 3
