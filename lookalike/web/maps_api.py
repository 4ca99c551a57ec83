"""The collection's 2-D map as data, for the maps page to draw: each image's point from INDEX/map/map-points.npz
(written by `lookalike map`), scaled to 0..1, with the label value it is coloured by. A click on a point searches."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict

from lookalike.web.deps import served_index
from lookalike.web.errors import error_responses
from lookalike.web.registry import ServedIndex

router = APIRouter(prefix="/api/indexes/{name}", tags=["maps"])
MAKE_MAP = "`lookalike map --index INDEX`"  # the command that makes (or remakes) an index's map
Served = Annotated[ServedIndex, Depends(served_index)]
COLOUR_LABELS = ("label", "cluster")  # the first of these the index has colours the map


class MapPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    x: float  # 0 (left) .. 1 (right)
    y: float  # 0 (bottom) .. 1 (top)
    group: str  # the image's value of colour_by ("" without one)


class MapPoints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    colour_by: str | None
    points: list[MapPoint]


@router.get("/map", summary="The 2-D map of the collection (`lookalike map`): a point per image",
            response_model=MapPoints, responses=error_responses(404, 422),
            description="Images removed since the map was made are left out; 404 until `lookalike map` made one.")
def map_points(served: Served) -> dict[str, Any]:
    ids, points = saved_points(served)
    with served.lock.reading():
        live = np.isin(ids, served.index.ids())
        labels = served.index.label_counts()
        colour_by = next((name for name in COLOUR_LABELS if name in labels), None)
        values = served.index.label_values(colour_by) if colour_by else {}
    ids, points = ids[live], points[live]
    low = points.min(axis=0) if len(points) else 0.0
    scaled = (points - low) / np.maximum(np.ptp(points, axis=0) if len(points) else 1.0, 1e-9)
    return {"colour_by": colour_by,
            "points": [{"id": int(i), "x": round(float(x), 5), "y": round(float(y), 5), "group": values.get(int(i), "")}
                       for i, (x, y) in zip(ids.tolist(), scaled.tolist(), strict=True)]}


def saved_points(served: ServedIndex) -> tuple[np.ndarray, np.ndarray]:
    path = served.index.files.map_points
    if not path.is_file():
        raise HTTPException(404, f"index {served.name!r} has no map yet: {MAKE_MAP} makes one")
    try:
        with np.load(path) as saved:
            ids, points = np.asarray(saved["ids"], np.int64), np.asarray(saved["points"], np.float64)
    except (OSError, ValueError, KeyError):
        raise HTTPException(422, f"the map of index {served.name!r} is damaged: run {MAKE_MAP} again") \
            from None
    if points.shape != (len(ids), 2) or not np.isfinite(points).all():
        raise HTTPException(422, f"the map of index {served.name!r} is damaged: run {MAKE_MAP} again")
    return ids, points
