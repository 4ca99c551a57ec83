"""Photos with EXIF capture data, made by the tests themselves (Pillow writes EXIF): a date taken, a camera and a
GPS position, each optional."""

from __future__ import annotations

from pathlib import Path

from conftest import write_photo
from PIL import Image

from lookalike.capture import DATE_TIME_ORIGINAL, EXIF_IFD, GPS_IFD, MAKE, MODEL


def write_exif_photo(path: Path, seed: int, taken: str | None = None, make: str | None = None,
                     model: str | None = None, place: tuple[float, float] | None = None) -> Path:
    """A synthetic photo (conftest.write_photo's picture) saved with the EXIF given; `taken` as EXIF writes it
    ("2021:06:01 14:30:00"), `place` as (latitude, longitude) in signed degrees."""
    write_photo(path, seed, size=(200, 150))
    exif = Image.Exif()
    if make is not None:
        exif[MAKE] = make
    if model is not None:
        exif[MODEL] = model
    if taken is not None:
        exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = taken
    if place is not None:
        gps = exif.get_ifd(GPS_IFD)
        for ref_tag, tag, value, signs in ((1, 2, place[0], "NS"), (3, 4, place[1], "EW")):
            minutes, seconds = divmod(abs(value) * 3600, 60)
            degrees, minutes = divmod(minutes, 60)
            gps[ref_tag] = signs[value < 0]
            gps[tag] = (float(degrees), float(minutes), round(seconds, 4))
    with Image.open(path) as image:
        image.load()
        image.save(path, exif=exif)
    return path
