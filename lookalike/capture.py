"""When, with what and where a photo was taken: its EXIF (DateTimeOriginal, camera make and model, GPS position),
read from the header Pillow has already parsed while the photo is open for decoding; a photo without a date in its
EXIF is dated by its file's modification time, and says so (`taken_source` "exif" or "file").

The time taken is kept as the camera's clock showed it, `YYYY-MM-DDTHH:MM:SS` (EXIF has no time zone), and a file's
time as this machine's local time, so both sort and compare as text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

EXIF_IFD, GPS_IFD = 0x8769, 0x8825  # the sub-directories of EXIF details and of the GPS position
MAKE, MODEL, DATE_TIME_ORIGINAL = 0x010F, 0x0110, 0x9003
GPS_LATITUDE_REF, GPS_LATITUDE, GPS_LONGITUDE_REF, GPS_LONGITUDE = 1, 2, 3, 4
TAKEN_FORMAT = "%Y-%m-%dT%H:%M:%S"
EXIF_FORMAT = "%Y:%m:%d %H:%M:%S"


@dataclass(frozen=True)
class Capture:
    """What a photo says about its capture; None where it says nothing."""

    taken: str | None = None  # YYYY-MM-DDTHH:MM:SS
    taken_source: str | None = None  # "exif" (DateTimeOriginal) or "file" (the file's modification time)
    camera_make: str | None = None
    camera_model: str | None = None
    latitude: float | None = None  # degrees, north positive
    longitude: float | None = None  # degrees, east positive

    @property
    def camera(self) -> str | None:
        """Make and model as one name ("Canon EOS 5D"; a model that repeats its make's first word, as NIKON
        CORPORATION's "NIKON D750" does, is not given the make again)."""
        make, model = self.camera_make or "", self.camera_model or ""
        if model.casefold().startswith((make.split() or [""])[0].casefold()):
            return model or None
        return f"{make} {model}".strip() or None

    def shown(self) -> dict[str, Any]:
        """What a search's match shows of it (lookalike.search.Match's fields)."""
        return {"taken": self.taken, "taken_source": self.taken_source, "camera": self.camera,
                "latitude": self.latitude, "longitude": self.longitude}

    def dated(self, mtime: float) -> Capture:
        """This capture, dated by the file's modification time when its EXIF gave no date."""
        if self.taken is not None or mtime <= 0:  # a remote file's time is unknown (0)
            return self
        return replace(self, taken=datetime.fromtimestamp(mtime).strftime(TAKEN_FORMAT), taken_source="file")

    def exif_only(self) -> Capture:
        """What the photo's bytes say (a copy of the photo has the same), without a date taken from its file."""
        return replace(self, taken=None, taken_source=None) if self.taken_source == "file" else self


def capture_of(exif: Any) -> Capture:
    """The capture an open image's EXIF (`Image.getexif()`) tells; a damaged or odd EXIF tells nothing, never fails."""
    try:
        details, gps = exif.get_ifd(EXIF_IFD), exif.get_ifd(GPS_IFD)
        latitude = _degrees(gps.get(GPS_LATITUDE), gps.get(GPS_LATITUDE_REF), 90.0)
        longitude = _degrees(gps.get(GPS_LONGITUDE), gps.get(GPS_LONGITUDE_REF), 180.0)
        taken = _exif_time(details.get(DATE_TIME_ORIGINAL))
    except Exception:  # noqa: BLE001 - metadata is a bonus: a photo is indexed whatever its EXIF holds
        return Capture()
    placed = latitude is not None and longitude is not None
    return Capture(taken, "exif" if taken else None, _text(exif.get(MAKE)), _text(exif.get(MODEL)),
                   latitude if placed else None, longitude if placed else None)


def _exif_time(value: Any) -> str | None:
    """An EXIF date ("2021:06:01 14:30:00", NUL-padded) as YYYY-MM-DDTHH:MM:SS; blank or impossible ones as None."""
    text = _text(value)
    try:
        return datetime.strptime(text[:19], EXIF_FORMAT).strftime(TAKEN_FORMAT) if text else None
    except ValueError:  # "0000:00:00 00:00:00", "    :  :     :  :  " and other placeholders
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", " ").strip() if value is not None else ""
    return text or None


def _degrees(value: Any, reference: Any, limit: float) -> float | None:
    """GPS degrees, minutes and seconds (rationals) as signed degrees; out of range or malformed as None."""
    if value is None or len(value) != 3:
        return None
    degrees = float(value[0]) + float(value[1]) / 60 + float(value[2]) / 3600
    if (_text(reference) or "").upper() in ("S", "W"):
        degrees = -degrees
    return degrees if math.isfinite(degrees) and abs(degrees) <= limit else None
