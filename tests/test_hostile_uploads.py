"""Hostile images, uploaded to a real `lookalike serve` on loopback (as a query and as an added image) and found
in a folder being indexed: each is indexed as the image it really is or refused with a reason (a 4xx, a reported
failure), the server stays up, keeps no bytes of a refused upload, and its memory stays bounded (peak resident
memory read from /proc while it handles each one)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import DEMO_GALLERY, REPO
from PIL import Image
from recovery import record_figure

from lookalike.cli import main
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder

MIB = 1 << 20


# --- the hostile files -----------------------------------------------------------------------------
def encoded(image: Image.Image, format: str, **options: object) -> bytes:  # noqa: A002 - Pillow's word
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A 69-byte PNG whose header claims width x height pixels (a decompression bomb as the header shows it)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(100)))
            + chunk(b"IEND", b""))


def png_with_text_bomb() -> bytes:
    """A valid 64x64 PNG carrying a zTXt chunk of 200 KB that inflates to 200 MB."""
    picture = encoded(Image.new("RGB", (64, 64), (200, 30, 30)), "PNG")
    bomb = chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * (200 * MIB), 9))
    return picture[:33] + bomb + picture[33:]  # right after the header chunk


def photo(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 20, size[0] // 20, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)


@dataclass(frozen=True)
class Hostile:
    name: str  # the file name it arrives under
    data: bytes
    accepted: bool  # indexed as the image it is (else refused)
    reason: str = ""  # what the refusal says


def hostile_files() -> list[Hostile]:
    jpeg = encoded(photo(1), "JPEG")
    animation = [photo(seed, (96, 96)).convert("P") for seed in (2, 3, 4)]
    sixteen_bit = Image.fromarray(np.asarray(photo(5).convert("L"), dtype=np.uint16) * 257)
    return [
        Hostile("bomb.png", png_claiming(100_000, 100_000), False, "bomb"),
        Hostile("huge-but-allowed.png", encoded(Image.new("RGBA", (6000, 6000), (9, 99, 199, 128)), "PNG"), True),
        Hostile("line.png", encoded(Image.new("RGB", (1, 100_000), (0, 0, 0)), "PNG"), False, "too small"),
        Hostile("truncated.jpg", jpeg[:len(jpeg) // 2], False, "truncated"),
        Hostile("png-named.jpg", encoded(photo(6), "PNG"), True),
        Hostile("cmyk.jpg", encoded(photo(7).convert("CMYK"), "JPEG"), True),
        Hostile("sixteen-bit.png", encoded(sixteen_bit, "PNG"), True),
        Hostile("animated.gif", encoded(animation[0], "GIF", save_all=True, append_images=animation[1:]), True),
        Hostile("text-bomb.png", png_with_text_bomb(), False, "bomb"),
        Hostile("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>', False,
                "not an image"),
        Hostile("page.jpg", b"<html><body><img src=x onerror=alert(1)></body></html>", False, "not an image"),
        Hostile("empty.jpg", b"", False, "empty"),
        Hostile("noise.png", np.random.default_rng(8).bytes(5000), False, "not an image"),
    ]


# --- the server -----------------------------------------------------------------------------------
@dataclass
class Server:
    client: httpx.Client
    process: subprocess.Popen[bytes]

    def reset_peak(self) -> None:
        """Make VmHWM start again from what is resident now (Linux 4.0 and later)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def memory(self, field: str) -> int:
        """VmRSS (resident now) or VmHWM (the peak since it started), in bytes, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    """`lookalike serve` over an index of 20 demo photos (a handcrafted model: these tests are about decoding)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc (Linux)")
    root = tmp_path_factory.mktemp("served")
    photos = root / "photos"
    photos.mkdir()
    for number, path in enumerate(sorted(DEMO_GALLERY.rglob("*.jpg"))[::7][:20]):
        shutil.copy(path, photos / f"{number:02d}.jpg")
    assert main(["index", str(photos), "--index", str(root / "idx"), "--model", "color-histogram"]) == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_API_TOKEN"} | {"LOOKALIKE_DECODE_SLOTS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(root / "idx"),
                                "--port", str(port)], cwd=REPO, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"lookalike serve did not become ready (exit code {process.poll()})")
            time.sleep(0.1)
        server = Server(client, process)
        warm = encoded(photo(0), "JPEG")  # the first upload and search load what every later one uses
        assert client.post("/api/indexes/idx/images", files={"files": ("warm.jpg", warm, "image/jpeg")}).is_success
        assert client.post("/api/indexes/idx/search", files={"image": ("warm.jpg", warm, "image/jpeg")}).is_success
        yield server, root
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def tree(folder: Path, leave_out: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if leave_out not in p.parents}


def refusal(added: httpx.Response, count: int) -> str:
    """Why an added upload was refused: a 422 when the bytes are no usable image at all, else the batch's report
    (a batch indexes what it can and reports the rest)."""
    if added.status_code == 422:
        return added.json()["detail"]
    assert added.status_code == 200 and added.json()["count"] == count, added.text
    [failure] = added.json()["report"]["failures"]
    return failure["reason"]


@pytest.mark.parametrize("hostile", hostile_files(), ids=lambda h: h.name)
def test_a_hostile_upload_is_indexed_as_what_it_is_or_refused_with_a_reason(hostile, served):
    server, root = served
    index = root / "idx"
    outside = tree(root, leave_out=index)
    count = server.client.get("/ready").json()["indexes"]["idx"]
    server.reset_peak()
    resident = server.memory("VmRSS")
    files = {"image": (hostile.name, hostile.data, "application/octet-stream")}
    searched = server.client.post("/api/indexes/idx/search", data={"k": "3"}, files=files)
    added = server.client.post("/api/indexes/idx/images", files={"files": files["image"]})
    peak = server.memory("VmHWM") - resident
    record_figure("hostile upload", file=hostile.name, bytes=len(hostile.data), search=searched.status_code,
                  add=added.status_code, server_peak_growth_mib=round(max(peak, 0) / MIB, 1))

    if hostile.accepted:
        assert searched.status_code == 200 and len(searched.json()["matches"]) == 3, searched.text
        assert added.status_code == 200 and added.json()["count"] == count + 1, added.text
    else:
        assert searched.status_code == 422, searched.text
        for reason in (searched.json()["detail"], refusal(added, count)):
            assert hostile.reason in reason or "not an image" in reason, reason
    assert server.client.get("/ready").status_code == 200  # still up
    # the largest image the server accepts (40 megapixels) decodes to 160 MB of RGBA, shrunk through one more copy
    assert peak < 400 * MIB, f"{hostile.name} took {peak / MIB:.0f} MiB more than the server held"
    assert tree(root, leave_out=index) == outside  # nothing written outside the index folder
    uploads = list(IndexFolder(index).uploads.iterdir())
    with ImageIndex.open(index) as opened:
        assert all(opened.record_by_path(p) is not None for p in uploads), "bytes of a refused upload were kept"


def test_hostile_files_in_a_folder_are_indexed_as_what_they_are_or_reported(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for hostile in hostile_files():
        (folder / hostile.name).write_bytes(hostile.data)
    with ImageIndex.create(tmp_path / "idx", model="color-histogram") as index:
        report = index.add_folder(folder)
        indexed = {Path(r.path).name for r in index.records()}
    reasons = {f.path.name: f.reason for f in report.failures}
    expected = {h.name for h in hostile_files() if h.accepted}
    assert indexed == expected and set(reasons) == {h.name for h in hostile_files()} - expected
    for hostile in hostile_files():
        if not hostile.accepted:
            assert hostile.reason.replace("not an image", "not an image Pillow can read") in reasons[hostile.name], \
                reasons[hostile.name]


def animated_gif(side: int = 6000, frames: int = 3) -> bytes:
    """A large animation that compresses to little (flat frames): 36 megapixels a frame, under the 40M limit."""
    shown = [Image.new("P", (side, side), n) for n in range(frames)]
    for frame in shown:
        frame.putpalette([value for n in range(256) for value in (n, n * 7 % 256, n * 13 % 256)])
    return encoded(shown[0], "GIF", save_all=True, append_images=shown[1:], duration=40)


def test_a_burst_of_large_uploads_is_decoded_a_few_at_a_time_and_its_memory_given_back(served):
    """8 concurrent searches by a 6000x6000 animated GIF on a server with 2 decode slots: each answered, the peak
    about that of 2 decodes (it was 8 decodes of 585 MiB each, 4.8 GB, kept after the burst), and the memory
    given back afterwards."""
    server, _ = served
    data = animated_gif()
    server.reset_peak()
    resident = server.memory("VmRSS")

    def search(_: int) -> int:
        return server.client.post("/api/indexes/idx/search", data={"k": "3"},
                                  files={"image": ("anim.gif", data, "image/gif")}).status_code

    with ThreadPoolExecutor(8) as clients:
        statuses = list(clients.map(search, range(8)))
    peak, after = server.memory("VmHWM") - resident, server.memory("VmRSS") - resident
    assert statuses == [200] * 8
    assert peak < 600 * MIB, f"the burst took {peak / MIB:.0f} MiB more than the server held"
    assert after < 100 * MIB, f"{after / MIB:.0f} MiB were not given back after the burst"
