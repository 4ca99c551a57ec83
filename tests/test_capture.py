"""What a photo says of its capture (lookalike.capture): the EXIF date, camera and GPS position, read while the photo
is decoded (or from its header alone), and dated by the file's time when the EXIF has no date."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from conftest import write_photo
from exif_photos import write_exif_photo
from PIL import Image

from lookalike.capture import DATE_TIME_ORIGINAL, EXIF_IFD, Capture
from lookalike.images import load_image, read_capture


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])  # (Pillow writes no EXIF sub-IFD into a TIFF)
def test_the_date_camera_and_place_are_read_while_decoding(tmp_path: Path, suffix: str):
    photo = write_exif_photo(tmp_path / f"a{suffix}", 1, "2021:06:01 14:30:05", "Canon", "Canon EOS 5D",
                             (48.8584, 2.2945))
    capture = load_image(photo).capture
    assert (capture.taken, capture.taken_source) == ("2021-06-01T14:30:05", "exif")
    assert (capture.camera_make, capture.camera_model, capture.camera) == ("Canon", "Canon EOS 5D", "Canon EOS 5D")
    assert capture.latitude == pytest.approx(48.8584, abs=1e-6)
    assert capture.longitude == pytest.approx(2.2945, abs=1e-6)
    assert read_capture(photo) == capture  # the header alone says the same


def test_south_and_west_are_negative(tmp_path: Path):
    capture = read_capture(write_exif_photo(tmp_path / "rio.jpg", 2, place=(-22.9519, -43.2105)))
    assert capture.latitude == pytest.approx(-22.9519, abs=1e-6)
    assert capture.longitude == pytest.approx(-43.2105, abs=1e-6)
    assert capture.taken is None and capture.camera is None


def test_a_photo_without_exif_is_dated_by_its_file_and_says_so(tmp_path: Path):
    photo = write_photo(tmp_path / "plain.png", 3)
    capture = load_image(photo).capture
    assert capture == Capture()
    mtime = photo.stat().st_mtime
    dated = capture.dated(mtime)
    assert dated.taken == datetime.fromtimestamp(mtime).strftime("%Y-%m-%dT%H:%M:%S")
    assert dated.taken_source == "file"
    assert dated.exif_only() == Capture()
    assert Capture().dated(0.0) == Capture()  # a remote file's unknown time dates nothing


@pytest.mark.parametrize("placeholder", ["0000:00:00 00:00:00", "    :  :     :  :  ", "", "2021:13:45 99:00:00"])
def test_placeholder_dates_fall_back_to_the_file_time(tmp_path: Path, placeholder: str):
    photo = write_photo(tmp_path / "a.jpg", 4)
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = placeholder
    with Image.open(photo) as image:
        image.load()
        image.save(photo, exif=exif)
    assert load_image(photo).capture.taken is None
    assert load_image(photo).capture.dated(photo.stat().st_mtime).taken_source == "file"


def test_a_camera_name_does_not_repeat_its_make():
    assert Capture(camera_make="NIKON CORPORATION", camera_model="NIKON D750").camera == "NIKON D750"
    assert Capture(camera_make="Apple", camera_model="iPhone 12").camera == "Apple iPhone 12"
    assert Capture(camera_make="Apple").camera == "Apple"
    assert Capture().camera is None


def test_a_file_that_is_no_image_says_nothing(tmp_path: Path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    assert read_capture(junk) == Capture()
    assert read_capture(tmp_path / "gone.jpg") == Capture()
