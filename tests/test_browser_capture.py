"""The page's date range and order in a real browser: `lookalike serve` on loopback over photos whose EXIF says when
they were taken (and one dated by its file); the range sends where taken>=FROM, taken<TO's next day and shows only
the photos taken in it, the order select sends sort, and every tile shows its date."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import write_photo
from exif_photos import write_exif_photo
from test_browser import headless_chromium, open_filters, open_search_page, require_browser, searched, serving

from lookalike.index import ImageIndex

INDEX = "shots"
TAKEN = {f"shot-{year}-{month:02}.jpg": f"{year}:{month:02}:15 10:00:00"
         for year, month in ((2018, 3), (2019, 7), (2020, 1), (2020, 12), (2021, 6), (2021, 12), (2022, 1), (2023, 5))}
PLAIN, PLAIN_DAY = "plain.png", "2021-03-01"  # no EXIF: dated by its file


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_browser()
    shots = tmp_path_factory.mktemp("capture-shots")
    for seed, (name, taken) in enumerate(TAKEN.items()):
        write_exif_photo(shots / name, seed, taken, "Canon", "Canon EOS 5D")
    plain = write_photo(shots / PLAIN, 20)
    stamp = datetime.fromisoformat(f"{PLAIN_DAY}T09:00:00").timestamp()
    os.utime(plain, (stamp, stamp))
    folder = tmp_path_factory.mktemp("capture-index") / INDEX
    with ImageIndex.create(folder, model="color-histogram", pca=0, dba=0) as index:
        index.add_folder(shots)
    with serving([folder], tmp_path_factory.mktemp("capture-server-log")) as base:
        yield base


@pytest.fixture(scope="module")
def chromium(server: str) -> Iterator:
    with headless_chromium() as browser:
        yield browser


@pytest.fixture
def page(chromium, server: str) -> Iterator:
    page = open_search_page(chromium, server, 30_000, lambda p: p.on("filechooser", lambda chooser: None))
    yield page
    page.context.close()


def tiles(page) -> list[dict]:
    return page.eval_on_selector_all("#results li", """items => items.map(item => ({
        id: Number(item.dataset.id), taken: item.querySelector('.taken').textContent,
        title: item.querySelector('.taken').title}))""")


def query_photo(tmp_path: Path) -> Path:
    return write_photo(tmp_path / "query.png", 42)  # not indexed: every photo in range can be shown


def test_the_date_range_shows_only_photos_taken_in_it_and_tiles_show_their_date(page, server, tmp_path):
    page.fill("#k", "20")
    query = query_photo(tmp_path)  # written once: Chromium refuses to upload a chosen file changed since
    searched(page, lambda: page.set_input_files("#file", str(query)))
    everything = tiles(page)
    assert len(everything) == len(TAKEN) + 1
    assert sorted(t["taken"] for t in everything) == sorted([*(v[:10].replace(":", "-") for v in TAKEN.values()),
                                                             PLAIN_DAY])
    plain = next(t for t in everything if t["taken"] == PLAIN_DAY)
    assert "file date" in plain["title"] and "EXIF" in next(t for t in everything if t is not plain)["title"]

    open_filters(page)  # folded until opened
    page.fill("#taken-from", "2020-01-01")
    searched(page, lambda: page.dispatch_event("#taken-from", "change"))
    page.fill("#taken-to", "2021-12-31")
    searched(page, lambda: page.dispatch_event("#taken-to", "change"))
    sent = parse_qs(urlparse(page.url).query)  # an upload is posted: the page keeps what it sent in its URL
    assert sent["where"] == ["taken>=2020-01-01", "taken<2022-01-01"]  # the last day is included whole
    shown = tiles(page)
    assert sorted(t["taken"] for t in shown) == ["2020-01-15", "2020-12-15", PLAIN_DAY, "2021-06-15", "2021-12-15"]
    answered = httpx.post(f"{server}/api/indexes/{INDEX}/search", timeout=30,
                          data={"k": "20", "where": ["taken>=2020-01-01", "taken<2022-01-01"]},
                          files={"image": ("query.png", query.read_bytes(), "image/png")})
    assert [m["id"] for m in answered.json()["matches"]] == [t["id"] for t in shown]  # what the API answers

    searched(page, lambda: page.select_option("#sort", "-taken"))
    assert parse_qs(urlparse(page.url).query)["sort"] == ["-taken"]
    newest = [t["taken"] for t in tiles(page)]
    assert newest == sorted(newest, reverse=True) and len(newest) == 5


def test_a_range_that_ends_before_it_starts_is_refused_on_the_page(page, tmp_path):
    searched(page, lambda: page.set_input_files("#file", str(query_photo(tmp_path))))
    open_filters(page)
    page.fill("#taken-from", "2022-01-01")
    searched(page, lambda: page.dispatch_event("#taken-from", "change"))
    before = len(page.searches)
    page.fill("#taken-to", "2021-01-01")
    page.dispatch_event("#taken-to", "change")
    page.wait_for_function("document.querySelector('#status').textContent.includes('before it starts')")
    assert len(page.searches) == before and tiles(page) == []  # refused on the page, the old results gone


def test_the_range_and_order_are_kept_in_the_link(chromium, server):
    ids = [image["id"] for image in httpx.get(f"{server}/api/indexes/{INDEX}/images?limit=100").json()["images"]]
    link = f"{server}/?index={INDEX}&id={ids[0]}&k=20&where=taken>%3D2021-01-01&where=taken<2022-01-01&sort=taken"
    page = open_search_page(chromium, server, 30_000)
    try:
        searched(page, lambda: page.goto(link))
        assert (page.input_value("#taken-from"), page.input_value("#taken-to")) == ("2021-01-01", "2021-12-31")
        assert page.input_value("#sort") == "taken" and page.input_value("#filter") == ""
        oldest = [t["taken"] for t in tiles(page)]
        assert oldest == sorted(oldest) and set(oldest) <= {PLAIN_DAY, "2021-06-15", "2021-12-15"}
    finally:
        page.context.close()


def test_an_uploaded_photo_is_indexed_with_its_capture_and_found_by_it(server, tmp_path):
    """The HTTP upload path (the web's own reads of the stored upload) keeps the EXIF too (runs last: it adds one)."""
    photo = write_exif_photo(tmp_path / "upload.jpg", 30, "2016:08:09 10:11:12", "PENTAX", "PENTAX K-1",
                             (-33.8568, 151.2153))
    # the query is an image indexed before (a query is left out of its own answers: a random query that drew the
    # upload found nothing, 1 time in 7)
    query = httpx.get(f"{server}/api/indexes/{INDEX}/images?limit=1").json()["images"][0]["id"]
    added = httpx.post(f"{server}/api/indexes/{INDEX}/images", timeout=60,
                       files={"files": ("upload.jpg", photo.read_bytes(), "image/jpeg")})
    assert added.status_code == 200, added.text
    found = httpx.get(f"{server}/api/indexes/{INDEX}/search", timeout=30,
                      params={"id": query, "k": "20", "where": "camera=pentax k-1", "near": "-33.86,151.21,5"})
    assert found.status_code == 200, found.text
    [match] = [m for m in found.json()["matches"]] or [None]
    assert match is not None and (match["taken"], match["taken_source"], match["camera"]) == (
        "2016-08-09T10:11:12", "exif", "PENTAX K-1")
    refused = httpx.get(f"{server}/api/indexes/{INDEX}/search", params={"random": "true", "where": "taken<soon"})
    assert refused.status_code == 422 and "taken compares with a date" in refused.text
