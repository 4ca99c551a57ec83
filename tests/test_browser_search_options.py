"""The search page's expansion select and its "Describe it" text box in a real browser: `lookalike serve` on loopback
over an EfficientNet index and a tiny random-weight CLIP whose text tower is steered so that chosen words embed exactly
onto chosen photos (tests/tiny_clip.py): the photo the words must find is known in advance."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from conftest import DEMO_GALLERY
from test_browser import (
    IMAGES_LOADED,
    PER_LABEL,
    headless_chromium,
    keep_screenshots,
    labelled_gallery,
    open_search_page,
    read_grid,
    require_browser,
    searched,
    serving,
)
from tiny_clip import save_tiny_checkpoint, steer_text_tower, torch_embeddings

from lookalike.embedders import get_embedder
from lookalike.images import load_image
from lookalike.index import ImageIndex

PLAIN, WORDS = "clothes", "words"  # an EfficientNet index (no text tower), a tiny CLIP one
STEERED = {"rusted flange": ("pants", 1), "a wide brimmed hat": ("hat", 2)}  # words -> (folder, n-th photo)
SHARE = "0.5"  # the words' share the page gives a mixed query


@dataclass(frozen=True)
class Served:
    base: str
    photo_of: dict[str, str]  # words -> the file name of the photo they embed onto


def steered_clip(folder: Path, gallery: Path) -> dict[str, str]:
    """A tiny CLIP checkpoint in `folder` whose words embed onto photos of the gallery; words -> photo file name."""
    save_tiny_checkpoint(folder)
    embedder = get_embedder("clip", weights=folder)
    photos = {words: sorted((gallery / label).glob("*.jpg"))[n] for words, (label, n) in STEERED.items()}
    pixels = np.stack([embedder.preprocess(load_image(p, embedder.input_side)) for p in photos.values()])
    steer_text_tower(folder, dict(zip(photos, torch_embeddings(folder, pixels=pixels), strict=True)))
    return {words: photo.name for words, photo in photos.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_browser()
    gallery = labelled_gallery(tmp_path_factory.mktemp("options-gallery"))
    weights = tmp_path_factory.mktemp("options-clip")
    photo_of = steered_clip(weights, gallery)
    root = tmp_path_factory.mktemp("options-index")
    with ImageIndex.create(root / PLAIN) as index:
        index.add_folder(gallery)
    # no augmentation: a random-weight tower embeds every photo alike, so blending neighbours would blur them
    with ImageIndex.create(root / WORDS, model="clip", weights=weights, pca=0, dba=0) as index:
        index.add_folder(gallery)
    with serving([root / PLAIN, root / WORDS], tmp_path_factory.mktemp("options-server-log")) as base:
        yield Served(base, photo_of)


@pytest.fixture(scope="module")
def chromium(server: Served) -> Iterator:
    with headless_chromium() as browser:
        yield browser


@pytest.fixture
def page(chromium, server: Served) -> Iterator:
    """The search page, loaded, with `page.searches`: the search requests it has sent (method and URL)."""
    page = open_search_page(chromium, server.base, 15_000)
    yield page
    page.context.close()


def capabilities(server: Served, index: str) -> dict:
    return httpx.get(f"{server.base}/api/indexes/{index}").json()["capabilities"]


def answer(server: Served, index: str, **fields) -> list[int]:
    """The ids the API answers, in order: what the page must show for the same search."""
    found = httpx.get(f"{server.base}/api/indexes/{index}/search", params=fields, timeout=30)
    assert found.status_code == 200, found.text
    return [match["id"] for match in found.json()["matches"]]


def uploaded_answer(server: Served, index: str, photo: Path, **fields) -> list[int]:
    found = httpx.post(f"{server.base}/api/indexes/{index}/search", data=fields, timeout=30,
                       files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert found.status_code == 200, found.text
    return [match["id"] for match in found.json()["matches"]]


def image_id(server: Served, index: str, name: str) -> int:
    images = httpx.get(f"{server.base}/api/indexes/{index}/images?limit=1000").json()["images"]
    return next(image["id"] for image in images if Path(image["path"]).name == name)


def form_fields(body: bytes) -> dict[str, list[str]]:
    """The text fields of a multipart form (the image part left out)."""
    fields: dict[str, list[str]] = {}
    for part in body.split(b"\r\n--"):
        head, _, value = part.partition(b"\r\n\r\n")
        if b'name="' in head and b"filename=" not in head:
            name = head.split(b'name="')[1].split(b'"')[0].decode()
            fields.setdefault(name, []).append(value.rstrip(b"\r\n").decode())
    return fields


def sent_forms(page) -> list[dict[str, list[str]]]:
    """From now on, the text fields of each form the page posts to a search (Chromium shows a posted form's body
    to a route, not to a request listener)."""
    forms: list[dict[str, list[str]]] = []

    def record(route) -> None:
        if route.request.method == "POST":
            forms.append(form_fields(route.request.post_data_buffer or b""))
        route.continue_()

    page.route("**/search", record)
    return forms


def url_state(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


# --- expansion ---------------------------------------------------------------------------------------------------
def test_the_expansion_select_offers_the_index_modes_each_explained_and_its_augmentation_in_words(page, server):
    caps = capabilities(server, PLAIN)
    assert set(caps["expansions"]) >= {"aqe", "none"} and caps["expand"] in caps["expansions"]
    assert page.eval_on_selector_all("#expand option", "o => o.map(x => x.value)") == list(caps["expansions"])
    assert page.input_value("#expand") == caps["expand"]
    assert page.get_by_role("combobox", name="Expansion").is_visible()
    help_line = page.text_content("#method-help")
    assert help_line.startswith("cosine:") and caps["expansions"][caps["expand"]] in help_line
    page.select_option("#expand", "none")
    assert caps["expansions"]["none"] in page.text_content("#method-help")
    assert caps["expansions"][caps["expand"]] not in page.text_content("#method-help")
    assert caps["augmentation"] and caps["augmentation"] in page.text_content("#augmentation")


def test_choosing_no_expansion_changes_the_request_the_url_and_the_order_and_a_reload_keeps_it(page, server):
    plain = {"k": 12}
    ids = [image["id"] for image in httpx.get(f"{server.base}/api/indexes/{PLAIN}/images").json()["images"]]
    query = next(i for i in ids  # a query whose order the expansion changes
                 if answer(server, PLAIN, id=i, **plain) != answer(server, PLAIN, id=i, expand="none", **plain))
    default = answer(server, PLAIN, id=query, **plain)
    unexpanded = answer(server, PLAIN, id=query, expand="none", **plain)
    options = searched(page, lambda: page.goto(f"{server.base}/?index={PLAIN}&id={query}"))
    assert "expand" not in options and "expand" not in url_state(page)  # the default is not sent
    assert [t["id"] for t in read_grid(page)] == default

    options = searched(page, lambda: page.select_option("#expand", "none"))
    assert options["expand"] == ["none"] and url_state(page)["expand"] == ["none"]
    assert [t["id"] for t in read_grid(page)] == unexpanded

    options = searched(page, lambda: page.reload())
    assert options["expand"] == ["none"] and page.input_value("#expand") == "none"
    assert [t["id"] for t in read_grid(page)] == unexpanded
    searched(page, lambda: page.go_back())  # the entry before: the default again
    assert page.input_value("#expand") == capabilities(server, PLAIN)["expand"]
    assert [t["id"] for t in read_grid(page)] == default


def test_an_uploaded_query_sends_the_expansion_in_its_form(page, server):
    photo = sorted((DEMO_GALLERY / "shoes").glob("*.jpg"))[PER_LABEL]  # not indexed
    unexpanded = uploaded_answer(server, PLAIN, photo, k=12, expand="none")
    assert unexpanded != uploaded_answer(server, PLAIN, photo, k=12)  # the expansion changes this query's answer
    forms = sent_forms(page)
    page.select_option("#expand", "none")
    searched(page, lambda: page.set_input_files("#file", str(photo)))
    assert forms[-1]["expand"] == ["none"] and "text" not in forms[-1]
    assert [t["id"] for t in read_grid(page)] == unexpanded


# --- words --------------------------------------------------------------------------------------------------------
def test_an_index_without_a_text_tower_has_no_text_box(page, server):
    assert capabilities(server, PLAIN)["text_search"] is False
    assert page.input_value("#index") == PLAIN and not page.is_visible("#text")
    assert page.get_by_role("searchbox", name="Describe it").count() == 0
    page.select_option("#index", WORDS)
    assert page.get_by_role("searchbox", name="Describe it").is_visible()
    page.goto(f"{server.base}/?index={PLAIN}&text=a+hat")  # a link with words, for an index that has none
    page.wait_for_selector("#index option", state="attached")
    assert not page.is_visible("#text") and page.searches == [] and read_grid(page) == []


def test_words_typed_in_describe_it_find_the_photo_they_embed_onto_and_stay_in_the_url(page, server, tmp_path):
    assert capabilities(server, WORDS)["text_search"] is True
    page.select_option("#index", WORDS)
    for words, photo in server.photo_of.items():
        page.fill("#text", words)
        options = searched(page, lambda: page.press("#text", "Enter"))
        assert options == {"k": ["12"], "method": ["cosine"], "text": [words]}  # words alone: no id, no weight
        grid = read_grid(page)
        assert grid[0]["id"] == image_id(server, WORDS, photo)
        assert [t["id"] for t in grid] == answer(server, WORDS, text=words, k=12)
        assert page.inner_text("#query-name") == f"“{words}”" and not page.is_visible("#confidence")
        assert not page.is_visible("#query-image")  # words alone: no picture
        assert url_state(page) == {"index": [WORDS], "k": ["12"], "method": ["cosine"], "text": [words]}
    assert page.evaluate("document.activeElement.id") == "text"  # focus stays in the box, to refine the words
    page.wait_for_function(IMAGES_LOADED)
    page.screenshot(path=str(tmp_path / "words.png"))

    shown = read_grid(page)
    searched(page, lambda: page.reload())
    assert read_grid(page) == shown and page.input_value("#text") == words
    page.fill("#text", "")
    page.press("#text", "Enter")  # no words: no query, nothing on screen that the box does not say
    assert read_grid(page) == [] and "text" not in url_state(page)
    keep_screenshots(tmp_path, "words.png")


def test_words_with_a_photo_make_a_mixed_query(page, server):
    photo = sorted((DEMO_GALLERY / "dress").glob("*.jpg"))[PER_LABEL]  # not indexed
    words = next(iter(server.photo_of))
    page.select_option("#index", WORDS)
    searched(page, lambda: page.set_input_files("#file", str(photo)))
    alone = [t["id"] for t in read_grid(page)]
    forms = sent_forms(page)
    page.fill("#text", words)
    searched(page, lambda: page.press("#text", "Enter"))
    assert forms[-1]["text"] == [words] and forms[-1]["text_weight"] == [SHARE]
    mixed = [t["id"] for t in read_grid(page)]
    assert mixed == uploaded_answer(server, WORDS, photo, k=12, text=words, text_weight=SHARE) and mixed != alone
    assert page.inner_text("#query-name") == f"{photo.name} + “{words}”"
    assert page.is_visible("#query-image")
    assert url_state(page)["text"] == [words]

    clicked = read_grid(page)[1]["id"]  # "similar" on a result: that photo, with the same words
    options = searched(page, lambda: page.click(f"#results li[data-id=\"{clicked}\"] .similar"))
    assert options["id"] == [str(clicked)] and options["text"] == [words] and options["text_weight"] == [SHARE]
    assert [t["id"] for t in read_grid(page)] == answer(server, WORDS, id=clicked, k=12, text=words,
                                                        text_weight=SHARE)
    assert page.inner_text("#query-name").endswith(f" + “{words}”")


def test_on_a_phone_the_text_box_leaves_the_results_on_the_first_screen(chromium, server, tmp_path):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                   has_touch=True)
    page = context.new_page()
    words = next(iter(server.photo_of))
    searched(page, lambda: page.goto(f"{server.base}/?index={WORDS}&text={words.replace(' ', '+')}"))
    page.wait_for_function(IMAGES_LOADED)
    page.wait_for_function("window.scrollY === 0")
    assert page.is_visible("#text") and page.input_value("#text") == words
    first = page.eval_on_selector("#results li", "item => item.getBoundingClientRect().bottom")
    assert first <= 844, "the first row of results is below the first screen"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "phone-words.png"))
    keep_screenshots(tmp_path, "phone-words.png")
    context.close()
