"""A 2-D map of an index's feature space: t-SNE (scikit-learn) or UMAP (when installed), drawn as a
PNG scatter coloured by a label (or cluster) and as a self-contained HTML page where hovering a
point shows its image (thumbnails embedded as base64, so the page works offline)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from lookalike.errors import RequestError
from lookalike.index.folder import MAP_POINTS

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

PCA_DIMENSIONS = 50  # t-SNE runs on a PCA reduction (the usual practice: faster, less noise)
HTML_THUMB_SIDE = 96
PNG_THUMBNAILS = 150  # images drawn on the thumbnail PNG

Points = npt.NDArray[np.float32]


@dataclass
class MapReport:
    method: str
    count: int
    seconds: float
    colour_by: str | None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "count": self.count, "seconds": round(self.seconds, 3),
                "colour_by": self.colour_by, "files": self.files}


def available_methods() -> list[str]:
    methods = ["tsne"]
    try:
        import umap  # noqa: F401

        methods.append("umap")
    except ImportError:
        pass
    return methods


def embed_2d(vectors: npt.NDArray[np.float32], method: str = "tsne", seed: int = 0,
             perplexity: float = 30.0) -> Points:
    """Project vectors to 2-D; PCA to 50 dimensions first, then t-SNE (or UMAP)."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    if method not in ("tsne", "umap"):
        raise RequestError(f"unknown map method {method!r}; choose tsne or umap")
    if method not in available_methods():
        raise RequestError("umap is not installed (pip install umap-learn); use --method tsne")
    if len(vectors) < 3:
        raise RequestError(f"a map needs at least 3 images, the index holds {len(vectors)}")
    stages = tqdm(total=2, desc=f"map ({method})", unit="stage", file=sys.stderr)
    with threadpool_limits(1):  # OpenMP/BLAS threads spin against each other on a busy 2-core machine (20x slower)
        reduced = vectors
        if vectors.shape[1] > PCA_DIMENSIONS and len(vectors) > PCA_DIMENSIONS:
            reduced = PCA(PCA_DIMENSIONS, random_state=seed).fit_transform(vectors)
        stages.update(1)
        stages.set_postfix_str(f"{method} on {len(vectors)} points")
        points = _layout(reduced, method, seed, perplexity)
    stages.update(1)
    stages.close()
    return np.asarray(points, dtype=np.float32)


def _layout(reduced: npt.NDArray[np.float32], method: str, seed: int, perplexity: float) -> Points:
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(reduced)
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, (len(reduced) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine").fit_transform(reduced)


def map_index(index: ImageIndex, out: str | os.PathLike[str] | None = None, colour_by: str | None = "label",
              method: str = "tsne", seed: int = 0, thumbnails: bool = True, html_page: bool = True) -> MapReport:
    """Write map.png (coloured scatter), map-thumbnails.png and map.html into `out` (default: the index
    folder's map folder, where `lookalike serve` shows it)."""
    from lookalike.plots import matplotlib_for

    matplotlib_for("the map")  # before minutes of t-SNE
    started = time.perf_counter()
    ids, vectors = index.vectors()
    points = embed_2d(vectors, method, seed)
    paths = {record.id: record.path for record in index.records()}
    chosen = colour_by if colour_by else None
    values = index.label_values(chosen) if chosen else {}
    if chosen and not values:
        chosen = None  # nothing labelled: one colour
    groups = [values.get(i, "(none)") for i in ids.tolist()] if chosen else ["" for _ in ids]
    folder = Path(out) if out is not None else index.files.map
    folder.mkdir(parents=True, exist_ok=True)
    image_paths = [paths[i] for i in ids.tolist()]
    files = [scatter_png(points, groups, folder / "map.png", f"{method} of {len(ids)} images", chosen)]
    if thumbnails:
        files.append(thumbnail_png(points, image_paths, folder / "map-thumbnails.png", seed))
    if html_page:
        files.append(map_html(points, image_paths, groups, ids.tolist(), folder / "map.html", chosen))
    np.savez(folder / MAP_POINTS, ids=ids, points=points)
    return MapReport(method, len(ids), time.perf_counter() - started, chosen, [str(f) for f in files])


def _palette(groups: list[str]) -> dict[str, str]:
    from lookalike.plots import matplotlib_for

    matplotlib = matplotlib_for("the map's colours")
    names = sorted(set(groups))
    colours = matplotlib.colormaps["tab20"].resampled(max(1, len(names)))
    return {name: matplotlib.colors.to_hex(colours(n)) for n, name in enumerate(names)}


def scatter_png(points: Points, groups: list[str], target: Path, title: str, colour_by: str | None) -> Path:
    from lookalike.plots import matplotlib_for

    matplotlib_for("the map")
    import matplotlib.pyplot as plt

    palette = _palette(groups)
    figure, axes = plt.subplots(figsize=(9, 8))
    size = max(2.0, 40.0 / np.sqrt(max(1, len(points)) / 100))
    for name, colour in palette.items():
        rows = [n for n, g in enumerate(groups) if g == name]
        axes.scatter(points[rows, 0], points[rows, 1], s=size, c=colour, label=name or None, alpha=0.8, linewidths=0)
    if colour_by and len(palette) <= 30:
        axes.legend(title=colour_by, fontsize=8, markerscale=2, loc="best")
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target


def thumbnail_png(points: Points, paths: list[str], target: Path, seed: int = 0, count: int = PNG_THUMBNAILS) -> Path:
    """The map with a sample of images drawn at their points."""
    from lookalike.plots import matplotlib_for

    matplotlib_for("the map")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    figure, axes = plt.subplots(figsize=(12, 11))
    axes.scatter(points[:, 0], points[:, 1], s=2, c="lightgrey")
    rows = np.random.default_rng(seed).choice(len(paths), size=min(count, len(paths)), replace=False)
    for row in tqdm(rows, desc="map thumbnails", unit="img", file=sys.stderr):
        thumb = _thumbnail(paths[row], 48)
        if thumb is not None:
            axes.add_artist(AnnotationBbox(OffsetImage(np.asarray(thumb)), points[row], frameon=False))
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target


def _thumbnail(path: str, side: int) -> Any:
    from lookalike.images import ImageError, load_image

    try:
        image = load_image(path, target_side=side).pixels
    except ImageError:
        return None
    image.thumbnail((side, side))
    return image


def _data_uri(path: str, side: int = HTML_THUMB_SIDE) -> str:
    thumb = _thumbnail(path, side)
    if thumb is None:
        return ""
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def map_html(points: Points, paths: list[str], groups: list[str], ids: list[int], target: Path,
             colour_by: str | None) -> Path:
    """One offline HTML file: a canvas scatter; hovering a point shows its thumbnail, path and label."""
    palette = _palette(groups)
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.maximum(high - low, 1e-9)
    data = []
    for n in tqdm(range(len(paths)), desc="map page thumbnails", unit="img", file=sys.stderr):
        data.append({"x": round(float(scaled[n, 0]), 5), "y": round(float(scaled[n, 1]), 5), "id": ids[n],
                     "path": paths[n], "group": groups[n], "colour": palette[groups[n]], "img": _data_uri(paths[n])})
    legend = "".join(f'<span><i style="background:{c}"></i>{html.escape(g)}</span>'
                     for g, c in palette.items() if g)
    page = _PAGE.replace("__TITLE__", html.escape(f"lookalike map of {len(paths)} images"))
    page = page.replace("__LEGEND__", legend).replace("__COLOUR_BY__", html.escape(colour_by or ""))
    page = page.replace("__DATA__", json.dumps(data).replace("</", "<\\/"))
    target.write_text(page, encoding="utf-8")
    return target


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:sans-serif;margin:0;background:#fafafa}
header{padding:8px 12px}
#legend span{margin-right:12px;font-size:13px;white-space:nowrap}
#legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:5px}
canvas{display:block;margin:0 12px;background:white;border:1px solid #ddd}
#tip{position:fixed;display:none;pointer-events:none;background:white;border:1px solid #999;padding:4px;
font-size:12px;max-width:260px;box-shadow:2px 2px 6px rgba(0,0,0,.2)}
#tip img{display:block;max-width:128px;max-height:128px}
</style></head><body>
<header><b>__TITLE__</b> <small>colour: __COLOUR_BY__ &middot; hover a point to see the image</small>
<div id="legend">__LEGEND__</div></header>
<canvas id="map" width="900" height="800"></canvas><div id="tip"></div>
<script>
const points = __DATA__;
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d"), tip = document.getElementById("tip");
const pad = 12, W = canvas.width - 2 * pad, H = canvas.height - 2 * pad;
const px = p => pad + p.x * W, py = p => pad + (1 - p.y) * H;
function draw(active) {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const p of points) {
    ctx.fillStyle = p.colour; ctx.beginPath(); ctx.arc(px(p), py(p), p === active ? 6 : 3, 0, 6.3); ctx.fill();
  }
}
canvas.addEventListener("mousemove", e => {
  const r = canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
  let best = null, bestD = 100;
  for (const p of points) { const d = (px(p) - mx) ** 2 + (py(p) - my) ** 2; if (d < bestD) { best = p; bestD = d; } }
  draw(best);
  if (!best) { tip.style.display = "none"; return; }
  tip.innerHTML = "";
  if (best.img) { const img = document.createElement("img"); img.src = best.img; tip.appendChild(img); }
  const text = document.createElement("div");
  text.textContent = (best.group ? best.group + " \\u00b7 " : "") + "#" + best.id + " " + best.path;
  tip.appendChild(text);
  tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px"; tip.style.display = "block";
});
canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; draw(null); });
draw(null);
</script></body></html>
"""
