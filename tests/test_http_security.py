"""The HTTP API against hostile files and requests (issues 17 and 24): files and folders swapped for links after
indexing or while a job reads them, models and options naming server-side files, deleting outside --index-root,
ids beyond 64 bits, file names that are not UTF-8, and uploads that leave bytes behind. In process with FastAPI's
TestClient, over tiny indexes."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DEMO_GALLERY, wait_for_job, write_photo
from fastapi.testclient import TestClient

from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder
from lookalike.web import ServerSettings, create_app

MODEL = "color-histogram"  # no network: these tests are about HTTP, not about vectors
TOO_BIG = 2**63  # one more than SQLite's largest integer


def client_for(*folders: Path, **settings: object) -> TestClient:
    return TestClient(create_app(list(folders), ServerSettings(**settings)))


def new_index(folder: Path, *photos: Path) -> Path:
    with ImageIndex.create(folder, model=MODEL) as index:
        index.add_files(photos)
    return folder


def only_id(client: TestClient, index: str) -> int:
    [image] = client.get(f"/api/indexes/{index}/images").json()["images"]
    return image["id"]


def jpeg_bytes(number: int = 0) -> bytes:
    return sorted((DEMO_GALLERY / "dress").glob("*.jpg"))[number].read_bytes()


def good_and_truncated() -> list[tuple[str, tuple[str, bytes, str]]]:
    """A batch whose second photo passes the upload check (its header is fine) and fails to decode."""
    return [("files", ("good.jpg", jpeg_bytes(), "image/jpeg")),
            ("files", ("cut.jpg", jpeg_bytes(1)[:2000], "image/jpeg"))]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A picture outside everything the server was given."""
    return write_photo(tmp_path / "private" / "secret.png", seed=99)


@pytest.fixture
def photo_index(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """An index (named `shown`) of one photo, and that photo."""
    photo = write_photo(tmp_path / "photos" / "photo.png", seed=1)
    yield new_index(tmp_path / "shown", photo), photo


# --- 1. the indexed file, not whatever its path leads to now ------------------------------------------
@pytest.mark.parametrize("route", ["file", "thumbnail"])
@pytest.mark.parametrize("target", ["text", "image"])
def test_a_file_swapped_for_a_symlink_after_indexing_is_not_served(
        photo_index: tuple[Path, Path], secret: Path, route: str, target: str) -> None:
    folder, photo = photo_index
    if target == "text":
        secret = secret.with_name("passwords.txt")
        secret.write_text("root:hunter2\n")
    original = photo.read_bytes()
    with client_for(folder) as client:
        image_id = only_id(client, "shown")
        served = client.get(f"/api/indexes/shown/images/{image_id}/file")
        assert served.status_code == 200 and served.content == original
        assert served.headers["content-type"] == "image/png" and served.headers["content-length"] == str(len(original))
        photo.unlink()
        photo.symlink_to(secret)
        response = client.get(f"/api/indexes/shown/images/{image_id}/{route}")
    assert response.status_code == 404
    assert response.json()["detail"] == (f"image {image_id} changed on disk since it was indexed: {photo} is a "
                                         f"symbolic link, which is not followed below a root (if the link is yours, "
                                         f"serve with --allowed-roots naming it); re-index it")
    assert not list((folder / "thumbnails").glob("*.jpg"))


@pytest.mark.parametrize("route", ["file", "thumbnail"])
def test_a_file_rewritten_after_indexing_is_not_served(photo_index: tuple[Path, Path], route: str) -> None:
    folder, photo = photo_index
    with client_for(folder) as client:
        image_id = only_id(client, "shown")
        write_photo(photo, seed=2, size=(200, 150))
        response = client.get(f"/api/indexes/shown/images/{image_id}/{route}")
    assert response.status_code == 404 and "changed on disk" in response.json()["detail"]


def test_a_vanished_file_is_404_saying_so(photo_index: tuple[Path, Path]) -> None:
    folder, photo = photo_index
    with client_for(folder) as client:
        image_id = only_id(client, "shown")
        photo.unlink()
        response = client.get(f"/api/indexes/shown/images/{image_id}/file")
    assert response.status_code == 404 and "its file is gone" in response.json()["detail"]


def test_a_path_swapped_for_a_link_out_of_the_root_before_the_job_runs_is_not_indexed(
        tmp_path: Path, secret: Path) -> None:
    root = tmp_path / "root"
    photo = write_photo(root / "photo.png", seed=3)
    empty = new_index(tmp_path / "fresh")
    with client_for(empty, allowed_roots=[root]) as client:
        served = client.app.state.registry.get("fresh")
        with served.lock.writing():  # the job waits for the lock: the request is checked, the file not yet read
            started = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(photo)]})
            assert started.status_code == 202
            photo.unlink()
            photo.symlink_to(secret)
        job = wait_for_job(client, started.json()["job_url"])
        assert job["status"] == "done" and job["report"]["added"] == 0 and job["done"] == 1
        assert job["report"]["failures"] == [{"path": str(photo), "reason": f"{photo} is a symbolic link, which is not "
                                                                            f"followed below a root"}]
        assert client.get("/api/indexes/fresh").json()["count"] == 0


# --- 1b. a folder swapped for a link, once or in a race (issue 24) ---------------------------------------
def twin_photos(inside: Path, outside: Path) -> tuple[Path, Path]:
    """Two different pictures of the same byte size and modification time (BMP: the size is the pixel count)."""
    write_photo(inside, seed=5)
    write_photo(outside, seed=6)
    assert inside.stat().st_size == outside.stat().st_size and inside.read_bytes() != outside.read_bytes()
    os.utime(outside, ns=(inside.stat().st_atime_ns, inside.stat().st_mtime_ns))
    return inside, outside


@pytest.mark.parametrize("route", ["file", "thumbnail"])
@pytest.mark.parametrize("roots", ["none", "photos"])
def test_a_folder_swapped_for_a_link_after_indexing_is_not_served(tmp_path: Path, route: str, roots: str) -> None:
    photos = tmp_path / "photos"
    decoy, secret = twin_photos(photos / "sub" / "decoy.bmp", tmp_path / "secret" / "decoy.bmp")
    folder = new_index(tmp_path / "shown", decoy)
    with client_for(folder, allowed_roots=[photos] if roots == "photos" else []) as client:
        image_id = only_id(client, "shown")
        (photos / "sub").rename(photos / "sub.orig")
        (photos / "sub").symlink_to(secret.parent)
        response = client.get(f"/api/indexes/shown/images/{image_id}/{route}")
    assert response.status_code == 404, response.content[:100]
    assert response.json()["detail"].startswith(f"image {image_id} changed on disk since it was indexed: "
                                                f"{photos / 'sub'} is a symbolic link")
    assert not list((folder / "thumbnails").glob("*.jpg"))


def renameat2_exchange() -> Callable[[Path, Path], None]:
    """Swap two names atomically (Linux renameat2 RENAME_EXCHANGE), else with two renames through a third name."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)

    def exchange(a: Path, b: Path) -> None:
        if renameat2 is not None and renameat2(-100, bytes(a), -100, bytes(b), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
            return
        a.rename(a.with_name("swapping"))
        b.rename(a)
        a.with_name("swapping").rename(b)
    return exchange


def test_a_folder_swapped_for_a_link_while_a_job_reads_it_leaks_nothing(tmp_path: Path) -> None:
    """A thread swaps allowed/sub with a link to secret/ (0.5 ms in every 2.5 ms) while the job adds sub's photos:
    every photo indexed must be one of sub's, never one of secret's (same names, other pictures)."""
    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    mine = {write_photo(allowed / "sub" / f"p{n}.png", seed=n).read_bytes() for n in range(48)}
    theirs = {write_photo(secret / f"p{n}.png", seed=100 + n).read_bytes() for n in range(48)}
    (allowed / "link").symlink_to(secret)
    exchange, stop, swaps = renameat2_exchange(), threading.Event(), []

    def swap() -> None:
        while not stop.is_set():
            exchange(allowed / "sub", allowed / "link")  # sub is now the link to secret/
            time.sleep(0.0005)
            exchange(allowed / "sub", allowed / "link")
            swaps.append(1)
            time.sleep(0.002)

    with client_for(new_index(tmp_path / "fresh"), allowed_roots=[allowed]) as client:
        started = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(allowed / "sub")]})
        assert started.status_code == 202 and started.json()["total"] == 48
        swapper = threading.Thread(target=swap)
        swapper.start()
        try:
            job = wait_for_job(client, started.json()["job_url"])
        finally:
            stop.set()
            swapper.join()
        assert job["status"] == "done" and swaps
        images = client.get("/api/indexes/fresh/images").json()["images"]
        responses = [client.get(image["file"]) for image in images]
        refused = [f["reason"] for f in job["report"]["failures"]]
        assert [r.status_code for r in responses] == [200] * len(images)
        served = [r.content for r in responses]
        assert all("symbolic link" in reason for reason in refused), [r for r in refused if "symbolic" not in r]
        assert len(images) + len(refused) == 48
        assert not set(served) & theirs and set(served) <= mine
        again = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(allowed / "sub")]})
        assert wait_for_job(client, again.json()["job_url"])["report"]["added"] == len(refused)  # no swap now
        assert {client.get(image["file"]).content for image in client.get("/api/indexes/fresh/images").json()[
            "images"]} == mine


# --- 2. a request names no server-side file ---------------------------------------------------------
@pytest.mark.parametrize("model", ["autoencoder:/etc/passwd", "autoencoder:weights.pt", "autoencoder"])
def test_a_model_that_names_a_file_is_refused_and_creates_nothing(tmp_path: Path, model: str) -> None:
    root = tmp_path / "made"
    with client_for(index_root=root) as client:
        response = client.post("/api/indexes", json={"name": "x", "model": model})
    detail = response.json()["detail"]
    assert response.status_code == 422 and "over HTTP a model must be one of" in detail
    assert "efficientnet-lite0" in detail and "color-histogram" in detail and "PATH" not in detail
    assert not (root / "x").exists()


def test_a_named_model_is_still_created_over_http(tmp_path: Path) -> None:
    with client_for(index_root=tmp_path / "made") as client:
        created = client.post("/api/indexes", json={"name": "x", "model": MODEL})
    assert created.status_code == 201 and created.json()["model"] == MODEL


@pytest.mark.parametrize("option", ["store", "weights", "device"])
@pytest.mark.parametrize("value", ["{tmp}/vectors.db", "milvus://localhost:19530/images", "cuda"])
def test_server_side_options_are_refused_and_create_nothing(tmp_path: Path, option: str, value: str) -> None:
    root = tmp_path / "made"
    with client_for(index_root=root) as client:
        response = client.post("/api/indexes", json={"name": "y", option: value.format(tmp=tmp_path)})
        assert client.get("/api/indexes").json() == []
    assert response.status_code == 422 and f"{option}: not a parameter" in response.json()["detail"]
    assert not root.exists() and not (tmp_path / "vectors.db").exists()


# --- 3. deleting only under --index-root ------------------------------------------------------------
@pytest.mark.parametrize("index_root", [None, "made"])
def test_an_index_served_from_outside_the_index_root_cannot_be_deleted(
        photo_index: tuple[Path, Path], tmp_path: Path, index_root: str | None) -> None:
    folder, _ = photo_index
    root = tmp_path / index_root if index_root else None
    with client_for(folder, index_root=root) as client:
        refused = client.delete("/api/indexes/shown")
        assert client.get("/api/indexes/shown").json()["count"] == 1
    assert refused.status_code == 403
    assert refused.json()["detail"] == "only indexes created under --index-root can be deleted over HTTP"
    assert IndexFolder(folder).is_index()


def test_an_index_linked_into_the_index_root_cannot_be_deleted(photo_index: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    folder, _ = photo_index
    root = tmp_path / "made"
    root.mkdir()
    (root / "shown").symlink_to(folder)
    with client_for(root / "shown", index_root=root) as client:
        assert client.delete("/api/indexes/shown").status_code == 403
    assert IndexFolder(folder).is_index()


def test_an_index_created_under_the_index_root_can_be_deleted(tmp_path: Path) -> None:
    root = tmp_path / "made"
    with client_for(index_root=root) as client:
        assert client.post("/api/indexes", json={"name": "gone", "model": MODEL}).status_code == 201
        assert client.delete("/api/indexes/gone").json() == {"deleted": "gone"}
    assert not (root / "gone").exists()


# --- 4. ids beyond 64 bits --------------------------------------------------------------------------
@pytest.mark.parametrize("image_id", [TOO_BIG, 2**64, -(2**63) - 1])
@pytest.mark.parametrize("method,route", [("GET", "images/{id}"), ("GET", "images/{id}/file"),
                                          ("GET", "images/{id}/thumbnail"), ("DELETE", "images/{id}"),
                                          ("GET", "search?id={id}")])
def test_ids_beyond_64_bits_are_client_errors(photo_index: tuple[Path, Path], image_id: int, method: str,
                                              route: str) -> None:
    folder, _ = photo_index
    with client_for(folder) as client:
        response = client.request(method, f"/api/indexes/shown/{route.format(id=image_id)}")
        assert client.get("/api/indexes/shown").json()["count"] == 1
    assert response.status_code in (404, 422) and response.json()["detail"]


# --- 5. file names that are not UTF-8 -----------------------------------------------------------------
NOT_UTF8 = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: Python keeps the \xe9 as a lone surrogate
SHOWN = "caf\\xe9"


def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    odd = write_photo(photos / f"{NOT_UTF8}.png", seed=4)
    write_photo(photos / "plain.png", seed=5)
    with ImageIndex.create(tmp_path / "odd", model=MODEL) as index:
        index.add_folder(photos)
        odd_id = index.record_by_path(odd).id
        plain_id = index.record_by_path(photos / "plain.png").id
    shown = str(photos / f"{SHOWN}.png")
    with client_for(tmp_path / "odd") as client:
        listed = client.get("/api/indexes/odd/images").json()["images"]
        assert sorted(image["path"] for image in listed) == sorted([shown, str(photos / "plain.png")])
        assert client.get(f"/api/indexes/odd/images/{odd_id}").json()["path"] == shown
        assert client.get(f"/api/indexes/odd/images/{odd_id}/file").content == odd.read_bytes()
        assert client.get(f"/api/indexes/odd/images/{odd_id}/thumbnail").status_code == 200
        by_id = client.get("/api/indexes/odd/search", params={"id": plain_id}).json()
        assert [m["path"] for m in by_id["matches"]] == [shown]
        assert client.get("/api/indexes/odd/search", params={"id": odd_id}).json()["query"] == shown
        uploaded = client.post("/api/indexes/odd/search", files={"image": ("q.png", odd.read_bytes(), "image/png")})
        assert uploaded.json()["matches"][0]["path"] == shown
        odd.unlink()
        gone = client.get(f"/api/indexes/odd/images/{odd_id}/file")
        assert gone.status_code == 404 and gone.json()["detail"].endswith(shown)


def test_failures_of_a_job_over_names_that_are_not_utf8_are_shown_escaped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / f"{NOT_UTF8}.png").write_bytes(b"not a picture at all")
    with client_for(new_index(tmp_path / "fresh"), allowed_roots=[root]) as client:
        started = client.post("/api/indexes/fresh/images/from-paths", json={"paths": [str(root)]})
        job = wait_for_job(client, started.json()["job_url"])
        [failure] = job["report"]["failures"]
        assert failure["path"] == str(root / f"{SHOWN}.png")
        assert client.get("/api/jobs").status_code == 200


# --- 6. a failed upload leaves no bytes behind ----------------------------------------------------------
def broken(*args: object, **kwargs: object) -> None:
    raise RuntimeError("disk on fire")


def uploaded_files(folder: Path) -> list[Path]:
    uploads = folder / "uploads"
    return sorted(uploads.iterdir()) if uploads.exists() else []


@pytest.mark.parametrize("background", [False, True])
def test_an_upload_that_fails_to_index_leaves_no_file(tmp_path: Path, background: bool) -> None:
    folder = new_index(tmp_path / "fresh")
    files = good_and_truncated()
    with client_for(folder) as client:
        response = client.post("/api/indexes/fresh/images", files=files, params={"background": str(background).lower()})
        report = wait_for_job(client, response.json()["job_url"])["report"] if background else response.json()["report"]
        assert report["added"] == 1 and report["failed"] == 1
        [image] = client.get("/api/indexes/fresh/images").json()["images"]
    assert uploaded_files(folder) == [Path(image["path"])]


def test_an_upload_whose_indexing_raises_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = new_index(tmp_path / "fresh")
    with client_for(folder) as client:
        monkeypatch.setattr(client.app.state.registry.get("fresh").index, "add_files", broken)
        with pytest.raises(RuntimeError, match="disk on fire"):
            client.post("/api/indexes/fresh/images", files={"files": ("a.jpg", jpeg_bytes(), "image/jpeg")})
    assert uploaded_files(folder) == []


def test_an_upload_already_indexed_stays_when_a_second_copy_fails(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = new_index(tmp_path / "fresh")
    upload = {"files": ("a.jpg", jpeg_bytes(), "image/jpeg")}
    with client_for(folder) as client:
        [image] = client.post("/api/indexes/fresh/images", files=upload).json()["images"]
        monkeypatch.setattr(client.app.state.registry.get("fresh").index, "add_files", broken)
        with pytest.raises(RuntimeError, match="disk on fire"):
            client.post("/api/indexes/fresh/images", files=upload)
    assert uploaded_files(folder) == [Path(image["path"])]


# --- 7. bounded work per request (issue 24) -----------------------------------------------------------------
def test_an_upload_waiting_too_long_for_a_decode_slot_is_503_with_retry_after(photo_index: tuple[Path, Path]) -> None:
    folder, _ = photo_index
    upload = {"image": ("q.jpg", jpeg_bytes(), "image/jpeg")}
    with client_for(folder, decode_slots=1, decode_wait_seconds=0.2) as client:
        with client.app.state.slots.slot():  # another request is decoding
            started = time.perf_counter()
            busy = client.post("/api/indexes/shown/search", files=upload)
            waited = time.perf_counter() - started
            thumbnail = client.get(f"/api/indexes/shown/images/{only_id(client, 'shown')}/thumbnail")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and 0.2 <= waited < 5
        assert "busy decoding other images (1 at a time" in busy.json()["detail"]
        assert thumbnail.status_code == 503  # made by decoding too; once made, it is served without a slot
        assert client.post("/api/indexes/shown/search", files=upload).status_code == 200
