"""Decoding: every kind of junk becomes an ImageError with a reason; every mode becomes upright RGB."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import DEMO_GALLERY, write_photo
from PIL import Image, ImageOps

from lookalike.images import ImageError, load_image, resize_and_crop, to_rgb

A_REAL_PHOTO = next((DEMO_GALLERY / "shoes").glob("*.jpg"))


def test_zero_byte_file_is_reported_as_empty(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")


def test_truncated_jpeg_is_reported_as_truncated(tmp_path):
    data = A_REAL_PHOTO.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def test_text_named_jpg_is_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.jpg")


def test_unsupported_format_is_reported(tmp_path):
    (tmp_path / "vector.jpg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')
    with pytest.raises(ImageError, match="unsupported format"):
        load_image(tmp_path / "vector.jpg")


def test_decompression_bomb_is_refused_with_a_clear_message(tmp_path):
    Image.new("1", (12_000, 8_000)).save(tmp_path / "bomb.png")  # 96 Mpx, a few KiB on disk
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")


def test_one_pixel_image_is_too_small(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(ImageError, match="too small"):
        load_image(tmp_path / "dot.png")


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    path = write_photo(tmp_path / "secret.png", seed=1)
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads everything: answer the access check as it would be answered for a user
        monkeypatch.setattr(os, "access", lambda candidate, mode: str(candidate) != str(path))
    with pytest.raises(ImageError, match="permission denied"):
        load_image(path)


def test_broken_symlink_is_reported(tmp_path):
    (tmp_path / "link.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageError, match="broken symbolic link"):
        load_image(tmp_path / "link.jpg")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "never-there.jpg")


def test_exif_orientation_is_applied(tmp_path):
    wide = Image.new("RGB", (120, 60), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    wide.save(tmp_path / "rotated.jpg", exif=exif)
    decoded = load_image(tmp_path / "rotated.jpg")
    assert decoded.pixels.size == (60, 120)


@pytest.mark.parametrize("mode", ["P", "L", "LA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / f"image-{mode.replace(';', '')}.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    write_photo(path, seed=3, mode=mode)
    assert load_image(path).pixels.mode == "RGB"


def test_transparent_areas_are_composited_on_white():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert to_rgb(image).getpixel((5, 5)) == (255, 255, 255)


def test_gif_uses_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    red, green, blue = load_image(tmp_path / "anim.gif").pixels.getpixel((10, 10))
    assert red > 200 and blue < 50


def test_large_jpeg_is_decoded_at_reduced_scale_but_reports_its_true_size(tmp_path):
    Image.fromarray(np.full((2000, 3000, 3), 128, np.uint8)).save(tmp_path / "big.jpg")
    decoded = load_image(tmp_path / "big.jpg", target_side=224)
    assert (decoded.width, decoded.height) == (3000, 2000)
    assert 224 <= min(decoded.pixels.size) < 500


def test_bytes_are_decoded_like_files():
    decoded = load_image(A_REAL_PHOTO.read_bytes())
    assert decoded.pixels.mode == "RGB" and decoded.width > 0


def test_resize_and_crop_gives_a_centred_square():
    image = Image.new("RGB", (400, 300))
    assert resize_and_crop(image, 224).size == (224, 224)


@pytest.mark.parametrize("resize_side", [None, 256])
def test_resize_and_crop_matches_resizing_the_whole_photo_then_cropping(resize_side):
    photo = load_image(A_REAL_PHOTO.read_bytes()).pixels
    scale = (resize_side or 224) / min(photo.size)
    whole = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BILINEAR)
    left, top = (whole.width - 224) // 2, (whole.height - 224) // 2
    expected = np.asarray(whole.crop((left, top, left + 224, top + 224)), dtype=np.int16)
    assert np.abs(np.asarray(resize_and_crop(photo, 224, resize_side), dtype=np.int16) - expected).max() <= 1


def quadrants_photo(size: tuple[int, int]) -> Image.Image:
    """Red, green, blue and white quadrants: any rotation or flip moves them."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = (255, 0, 0)
    pixels[: height // 2, width // 2:] = (0, 255, 0)
    pixels[height // 2:, : width // 2] = (0, 0, 255)
    pixels[height // 2:, width // 2:] = (255, 255, 255)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_decoded_at_a_reduced_scale_are_turned_upright(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    quadrants_photo((640, 480)).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    decoded = load_image(tmp_path / "photo.jpg", target_side=224).pixels
    with Image.open(tmp_path / "photo.jpg") as original:
        upright = ImageOps.exif_transpose(original)
    assert min(decoded.size) < 480  # decoded at 6/8: 480x360, or 360x480 upright
    assert decoded.size[0] / decoded.size[1] == pytest.approx(upright.width / upright.height)
    shrunk = np.asarray(upright.resize(decoded.size), np.float32)
    assert np.abs(np.asarray(decoded, np.float32) - shrunk).mean() < 8


def test_a_photo_decoded_at_a_reduced_scale_looks_like_the_full_decode():
    decoded = load_image(A_REAL_PHOTO.read_bytes(), target_side=224).pixels  # 400x534: decoded at 5/8
    with Image.open(A_REAL_PHOTO) as full:
        full = full.convert("RGB")
    assert 224 <= min(decoded.size) < 400
    crop, reference = resize_and_crop(decoded, 224), resize_and_crop(full, 224)
    assert np.abs(np.asarray(crop, np.float32) - np.asarray(reference, np.float32)).mean() < 4


def test_grey_jpeg_decoded_at_a_reduced_scale_becomes_rgb(tmp_path):
    quadrants_photo((640, 480)).convert("L").save(tmp_path / "grey.jpg")
    decoded = load_image(tmp_path / "grey.jpg").pixels
    assert decoded.mode == "RGB" and min(decoded.size) < 480


def test_truncated_large_jpeg_is_reported_as_truncated(tmp_path):
    data = tmp_path / "big.jpg"
    quadrants_photo((1200, 900)).save(data, quality=95)
    (tmp_path / "cut.jpg").write_bytes(data.read_bytes()[:-2000])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize(("suffix", "pillow_format"), [(".heic", "HEIF"), (".avif", "AVIF")])
def test_phone_formats_decode_like_the_jpeg_they_were_made_from(tmp_path, suffix, pillow_format):
    """An iPhone's HEIC and a modern AVIF are read (pillow-heif, Pillow's own AVIF): the same picture as its JPEG."""
    photo = sorted((DEMO_GALLERY / "shoes").glob("*.jpg"))[0]
    with Image.open(photo) as original:
        original.convert("RGB").save(tmp_path / f"photo{suffix}", format=pillow_format, quality=90)
    decoded = load_image(tmp_path / f"photo{suffix}")
    reference = load_image(photo)
    assert (decoded.width, decoded.height) == (reference.width, reference.height)
    a = np.asarray(decoded.pixels.resize((64, 64)), np.float32)
    b = np.asarray(reference.pixels.resize((64, 64)), np.float32)
    assert np.abs(a - b).mean() < 12  # lossy both ways, the same picture
    assert load_image((tmp_path / f"photo{suffix}").read_bytes()).width == reference.width


def test_heic_and_avif_are_indexed_and_searched_through_every_door(tmp_path):
    from fastapi.testclient import TestClient

    from lookalike.cli import main
    from lookalike.index import ImageIndex
    from lookalike.web import ServerSettings, create_app

    photos = sorted((DEMO_GALLERY / "dress").glob("*.jpg"))[:3] + sorted((DEMO_GALLERY / "hat").glob("*.jpg"))[:3]
    folder = tmp_path / "phone"
    folder.mkdir()
    for number, photo in enumerate(photos):
        pillow_format, suffix = ("HEIF", ".heic") if number % 2 else ("AVIF", ".avif")
        with Image.open(photo) as original:
            original.convert("RGB").save(folder / f"{photo.stem}{suffix}", format=pillow_format)
    assert main(["index", str(folder), "--index", str(tmp_path / "idx")]) == 0
    with ImageIndex.open(tmp_path / "idx") as index:
        assert len(index) == 6
        indexed = folder / f"{photos[1].stem}.heic"
        query = tmp_path / "query.heic"  # not indexed: embedded as a new photo
        query.write_bytes(indexed.read_bytes())
        first = index.search(query, k=1).matches[0]
        assert first.path == str(indexed.resolve()) and first.same_photo
    with TestClient(create_app([tmp_path / "idx"], ServerSettings())) as client:
        found = client.post("/api/indexes/idx/search", files={"image": query.read_bytes()}).json()
        assert found["matches"][0]["path"].endswith(indexed.name) and found["matches"][0]["same_photo"]
        added = client.post("/api/indexes/idx/images", files=[("files", ("new.heic", query.read_bytes()))])
        assert added.status_code in (200, 201), added.text
        assert added.json()["report"]["added"] == 1 and added.json()["images"][0]["path"].endswith(".heic")
