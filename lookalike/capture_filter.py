"""Filters on what photos say of their capture (lookalike.capture): `where` terms on `taken` and `camera`, and `near`.

    taken>=2021-01-01   taken<2022   taken=2021-06   taken<=2021-06-30T12:00
    camera=Canon EOS 5D (the make and model, the model alone or the make alone, ignoring case)
    near="48.85,2.35,10" (within 10 km of that latitude and longitude, along the Earth's surface)

A date is a period: a year, a month, a day or a moment (to the minute or second). `taken>=P` keeps photos taken from
P's start, `taken>P` from its end, `taken<P` before its start, `taken<=P` before its end, and `taken=P` within it
(given twice: within either). Comparisons all apply. The other names of `where` stay label filters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from lookalike.capture import TAKEN_FORMAT, Capture
from lookalike.errors import RequestError

TAKEN, CAMERA = "taken", "camera"  # the capture names of `where`; every other name is a label
COMPARISONS = (">=", "<=", ">", "<")
TAKEN_TERM = re.compile(r"^\s*(taken)\s*(>=|<=|>|<|=)\s*(\S.*?)\s*$", re.IGNORECASE)
EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
PERIOD_FORMATS = (("%Y", "year"), ("%Y-%m", "month"), ("%Y-%m-%d", "day"), ("%Y-%m-%dT%H:%M", "minute"),
                  ("%Y-%m-%d %H:%M", "minute"), ("%Y-%m-%dT%H:%M:%S", "second"), ("%Y-%m-%d %H:%M:%S", "second"))


@dataclass(frozen=True)
class Period:
    """[start, end) as taken times (text that sorts as time)."""

    start: str
    end: str


@dataclass(frozen=True)
class Near:
    latitude: float
    longitude: float
    km: float

    def distances_km(self, latitudes: Sequence[float], longitudes: Sequence[float]) -> list[float]:
        """Great-circle distances (haversine) from this point, for many points at once."""
        lat0, lon0 = np.radians(self.latitude), np.radians(self.longitude)
        lat, lon = np.radians(np.asarray(latitudes, float)), np.radians(np.asarray(longitudes, float))
        h = np.sin((lat - lat0) / 2) ** 2 + np.cos(lat0) * np.cos(lat) * np.sin((lon - lon0) / 2) ** 2
        return (2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))).tolist()

    def latitude_band(self) -> tuple[float, float]:
        """The latitudes a photo within `km` can have (a cheap first cut before the distance)."""
        spread = math.degrees(self.km / EARTH_RADIUS_KM)
        return self.latitude - spread, self.latitude + spread


@dataclass(frozen=True)
class CaptureFilter:
    """What the capture terms of one search allow; `admits` decides for one image's capture."""

    after: str | None = None  # taken >= after
    before: str | None = None  # taken < before
    periods: tuple[Period, ...] = ()  # taken within one of them
    cameras: tuple[str, ...] = ()  # case-folded names, any of them
    near: Near | None = None

    def admits(self, capture: Capture) -> bool:
        """Whether an image's capture passes the camera and distance terms (the dates are compared in SQL too)."""
        if self.cameras and not _camera_names(capture) & set(self.cameras):
            return False
        if self.near is not None:
            if capture.latitude is None or capture.longitude is None:
                return False
            return self.near.distances_km([capture.latitude], [capture.longitude])[0] <= self.near.km
        return True


def is_taken_term(term: str) -> re.Match[str] | None:
    """`taken` with a comparison (taken>=2021, taken<2022-06): the `where` terms that are not NAME=VALUE."""
    return TAKEN_TERM.match(term)


def split_capture(where: Mapping[str, Sequence[str]], near: str | None = None) -> tuple[dict, CaptureFilter | None]:
    """The label filters of `where` and a CaptureFilter of its capture terms and `near` (None when there are none).
    Bad dates, places and distances raise RequestError saying what is expected."""
    labels = {name: tuple(values) for name, values in where.items() if _capture_name(name) is None}
    terms = {_capture_name(name): tuple(values) for name, values in where.items() if _capture_name(name) is not None}
    if not terms and near is None:
        return labels, None
    after, before, periods = None, None, []
    for (name, operator), values in terms.items():
        if name == CAMERA:
            continue
        for value in values:
            period = parse_period(value)
            if operator == "=":
                periods.append(period)
            elif operator in (">=", ">"):
                start = period.start if operator == ">=" else period.end
                after = start if after is None else max(after, start)
            else:
                end = period.start if operator == "<" else period.end
                before = end if before is None else min(before, end)
    cameras = tuple(value.strip().casefold() for value in terms.get((CAMERA, "="), ()))
    return labels, CaptureFilter(after, before, tuple(periods), cameras, parse_near(near))


def _capture_name(name: str) -> tuple[str, str] | None:
    """(taken, operator) or (camera, "=") for a capture key of `where` ("taken", "taken>=", "Camera"); else None."""
    folded = name.strip().casefold()
    if folded == CAMERA:
        return CAMERA, "="
    operator = folded.removeprefix(TAKEN).strip() or "=" if folded.startswith(TAKEN) else None
    return (TAKEN, operator) if operator in (*COMPARISONS, "=") else None


def parse_period(value: str) -> Period:
    """A date or moment as the period it names (2021: the year; 2021-06-01: the day; 2021-06-01T14:30: the minute)."""
    text = value.strip()
    for pattern, unit in PERIOD_FORMATS:
        try:
            start = datetime.strptime(text, pattern)
        except ValueError:
            continue
        return Period(start.strftime(TAKEN_FORMAT), _period_end(start, unit).strftime(TAKEN_FORMAT))
    raise RequestError(f"taken compares with a date: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], not {value!r}")


def _period_end(start: datetime, unit: str) -> datetime:
    if unit == "year":
        return start.replace(year=start.year + 1)
    if unit == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + {"day": timedelta(days=1), "minute": timedelta(minutes=1), "second": timedelta(seconds=1)}[unit]


def parse_near(near: str | None) -> Near | None:
    """`near` as LAT,LON,KM (degrees, north and east positive; a distance in kilometres)."""
    if near is None:
        return None
    try:
        latitude, longitude, km = (float(part) for part in str(near).split(","))
    except ValueError:
        raise RequestError(f"near is LAT,LON,KM (e.g. 48.85,2.35,10), not {near!r}") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180 and km >= 0 and math.isfinite(km)):
        raise RequestError(f"near needs a latitude in [-90, 90], a longitude in [-180, 180] and a distance of at "
                           f"least 0 km, not {near!r}")
    return Near(latitude, longitude, km)


def _camera_names(capture: Capture) -> set[str]:
    names = {capture.camera_make, capture.camera_model, capture.camera}
    return {name.strip().casefold() for name in names if name}


def taken_order(taken: Sequence[str | None], newest_first: bool) -> list[int]:
    """Positions in order of the time taken (oldest or newest first); those without a date last, in their order."""
    dated = sorted((i for i, when in enumerate(taken) if when), key=lambda i: taken[i] or "", reverse=newest_first)
    return dated + [i for i, when in enumerate(taken) if not when]
