// The maps page: the collection's 2-D map drawn from its points (a click searches from a photo; zoom, pan and
// touch), and the contact sheets and pictures that other lookalike commands wrote into the index folder.
"use strict";

const $ = (id) => document.getElementById(id);
// matplotlib's tab20; map.png takes it resampled to the number of groups (lookalike/organise/mapping.py), and so
// does paletteColour: the same label has the same colour in both
const PALETTE = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
  "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf",
  "#9edae5"];
const paletteColour = (n, count) => {  // matplotlib: ListedColormap.resampled(count)(n), as a hex colour
  const x = count === 1 ? 0 : n === count - 1 ? 1 : n * (1 / (count - 1));  // np.linspace(0, 1, count)[n]
  return PALETTE[Math.min(PALETTE.length - 1, Math.floor(x * PALETTE.length))];
};
const PAD = 14;
const REACH = { mouse: 16, touch: 28, pen: 20 }; // how near a pointer must be to a point to pick it (CSS pixels)
let map = null; // {points, colours: {group: colour}}
let view = { scale: 1, x: 0, y: 0 }; // zoom and pan: on screen = laid out * scale + (x, y)
let picked = null;
const pointers = new Map(); // the pointers down on the map, for dragging and pinching
let gesture = null; // {moved, start, view, distance, middle}
const THUMBNAILS_AT_MOST = 200; // with at most this many photos in sight the map shows the photos, else dots
let thumbnails = new Map(); // image id -> its thumbnail, loaded once
let drawing = 0;

async function api(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

const indexName = () => $("index").value;
const searchUrl = (point) => `/?index=${encodeURIComponent(indexName())}&id=${point.id}`;
const thumbnailUrl = (point) => `/api/indexes/${encodeURIComponent(indexName())}/images/${point.id}/thumbnail`;

async function loadIndexes() {
  const list = await api("/api/indexes");
  for (const info of list) $("index").append(new Option(info.name, info.name));
  const asked = new URLSearchParams(location.search).get("index");
  if (list.some((info) => info.name === asked)) $("index").value = asked;
  $("index").addEventListener("change", () => {
    history.replaceState(null, "", `?index=${encodeURIComponent(indexName())}`);
    showIndex();
  });
  if (!list.length) { $("status").textContent = "this server has no index"; return; }
  await showIndex();
}

async function showIndex() {
  const [hasMap, sheets] = await Promise.all([showMap(), showArtifacts()]);
  $("status").textContent = hasMap || sheets ? "" : "no cluster map, 2-D map or contact sheet in this index yet "
    + "(`lookalike map --index INDEX` and `lookalike cluster --index INDEX` make them; they appear here)";
}

// --- the map ---------------------------------------------------------------------------------------------------
async function showMap() {
  picked = null;
  thumbnails = new Map();
  $("map-pick").replaceChildren();
  try {
    const answer = await api(`/api/indexes/${encodeURIComponent(indexName())}/map`);
    const groups = [...new Set(answer.points.map((p) => p.group))].sort();
    const colours = Object.fromEntries(groups.map((g, n) => [g, paletteColour(n, groups.length)]));
    map = { points: answer.points, colours, colourBy: answer.colour_by };
  } catch (error) {
    map = null;
    $("map-panel").hidden = true;
    if (error.status !== 404) $("status").textContent = error.message;
    return false;
  }
  $("map-panel").hidden = false;
  $("map").setAttribute("aria-label", `map of ${map.points.length} photos`
    + (map.colourBy ? `, coloured by ${map.colourBy}` : ""));
  showLegend();
  view = { scale: 1, x: 0, y: 0 };
  resize();
  return true;
}

function showLegend() {
  const legend = $("map-legend");
  legend.replaceChildren();
  if (!map.colourBy) return;
  for (const [group, colour] of Object.entries(map.colours)) {
    const entry = document.createElement("span");
    const dot = document.createElement("i");
    dot.style.background = colour;
    entry.append(dot, group || "(none)");
    legend.append(entry);
  }
}

function resize() {
  const canvas = $("map");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(canvas.clientWidth * ratio);
  canvas.height = Math.round(canvas.clientHeight * ratio);
  draw();
}

// where a point is on the canvas, in CSS pixels
function place(point) {
  const canvas = $("map");
  const x = PAD + point.x * (canvas.clientWidth - 2 * PAD);
  const y = PAD + (1 - point.y) * (canvas.clientHeight - 2 * PAD);
  return [x * view.scale + view.x, y * view.scale + view.y];
}

const redraw = () => { if (!drawing) drawing = requestAnimationFrame(() => { drawing = 0; draw(); }); };

function thumbnailOf(point) {
  let image = thumbnails.get(point.id);
  if (!image) {
    image = new Image();
    image.onload = redraw;
    image.src = thumbnailUrl(point);
    thumbnails.set(point.id, image);
  }
  return image;
}

// few photos in sight: each drawn as a small picture framed in its colour; many: coloured dots
function draw() {
  if (!map) return;
  const canvas = $("map");
  const context = canvas.getContext("2d");
  const ratio = canvas.width / Math.max(1, canvas.clientWidth);
  const [width, height] = [canvas.clientWidth, canvas.clientHeight];
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  const inSight = map.points.filter((point) => {
    const [x, y] = place(point);
    return x > -PAD && y > -PAD && x < width + PAD && y < height + PAD;
  });
  const pictures = inSight.length <= THUMBNAILS_AT_MOST;
  const side = Math.min(96, Math.max(22, 30 * Math.sqrt(view.scale) * Math.min(1, width / 700)));
  const radius = Math.min(6, Math.max(2.5, 3 * Math.sqrt(view.scale)));
  for (const point of [...inSight.filter((p) => p !== picked), ...(picked ? [picked] : [])]) {
    const [x, y] = place(point);
    const grow = point === picked ? 1.6 : 1;
    context.fillStyle = map.colours[point.group];
    if (pictures) {
      const s = side * grow;
      context.fillRect(x - s / 2 - 2, y - s / 2 - 2, s + 4, s + 4);
      const image = thumbnailOf(point);
      if (image.complete && image.naturalWidth) {
        const fit = Math.min(s / image.naturalWidth, s / image.naturalHeight);
        const [w, h] = [image.naturalWidth * fit, image.naturalHeight * fit];
        context.drawImage(image, x - w / 2, y - h / 2, w, h);
      }
    } else {
      context.beginPath();
      context.arc(x, y, radius * grow, 0, 2 * Math.PI);
      context.fill();
    }
  }
  if (picked) {
    const [x, y] = place(picked);
    context.lineWidth = 3;
    context.strokeStyle = getComputedStyle(document.body).color;
    const s = (pictures ? side * 1.6 : radius * 1.6) / 2 + 5;
    context.strokeRect(x - s, y - s, 2 * s, 2 * s);
    placePick(x, y);
  }
}

// the picked photo's card beside its point (below and to the right, turned back where the map ends), not under the map
function placePick(x, y) {
  const canvas = $("map");
  const panel = $("map-pick");
  const gap = 18;
  let left = canvas.offsetLeft + x + gap;
  let top = canvas.offsetTop + y + gap;
  if (left + panel.offsetWidth > canvas.offsetLeft + canvas.clientWidth) left -= panel.offsetWidth + 2 * gap;
  if (top + panel.offsetHeight > canvas.offsetTop + canvas.clientHeight) top -= panel.offsetHeight + 2 * gap;
  panel.style.left = `${Math.max(canvas.offsetLeft, left)}px`;
  panel.style.top = `${Math.max(canvas.offsetTop, top)}px`;
}

function nearest(x, y, reach) {
  let best = null;
  let bestDistance = reach * reach;
  for (const point of map.points) {
    const [px, py] = place(point);
    const distance = (px - x) ** 2 + (py - y) ** 2;
    if (distance < bestDistance) { best = point; bestDistance = distance; }
  }
  return best;
}

function pick(point) {
  picked = point;
  draw();
  const panel = $("map-pick");
  panel.replaceChildren();
  if (!point) return;
  const image = document.createElement("img");
  image.src = thumbnailUrl(point);
  image.alt = `${point.group ? point.group + " " : ""}photo ${point.id}`;
  const text = document.createElement("div");
  const name = document.createElement("p");
  name.textContent = `${point.group ? `${map.colourBy} ${point.group} · ` : ""}image ${point.id}`;
  const link = document.createElement("a");
  link.href = searchUrl(point);
  link.textContent = "search from this";
  link.id = "map-search";
  text.append(name, link);
  panel.append(image, text);
  placePick(...place(point));
}

function zoom(factor, x, y) {
  const scale = Math.min(40, Math.max(1, view.scale * factor));
  const applied = scale / view.scale;
  view = { scale, x: x - (x - view.x) * applied, y: y - (y - view.y) * applied };
  if (scale === 1) view = { scale: 1, x: 0, y: 0 };
  draw();
}

const local = (event) => {
  const box = $("map").getBoundingClientRect();
  return [event.clientX - box.left, event.clientY - box.top];
};

function wireMap() {
  const canvas = $("map");
  canvas.addEventListener("pointerdown", (event) => {
    try { canvas.setPointerCapture(event.pointerId); } catch (error) { /* a pointer the browser no longer has */ }
    pointers.set(event.pointerId, local(event));
    const [first, second] = [...pointers.values()];
    gesture = { moved: pointers.size > 1, start: first, view: { ...view } };
    if (second) {
      gesture.distance = Math.hypot(first[0] - second[0], first[1] - second[1]);
      gesture.middle = [(first[0] + second[0]) / 2, (first[1] + second[1]) / 2];
    }
  });
  canvas.addEventListener("pointermove", (event) => {
    const [x, y] = local(event);
    if (!pointers.has(event.pointerId)) { // a mouse passing over: show what is under it
      if (event.pointerType === "mouse" && map) pick(nearest(x, y, REACH.mouse) || picked);
      return;
    }
    pointers.set(event.pointerId, [x, y]);
    const [first, second] = [...pointers.values()];
    if (second && gesture.distance) { // pinch: zoom around the fingers' middle
      const distance = Math.hypot(first[0] - second[0], first[1] - second[1]);
      view = { ...gesture.view };
      zoom(distance / gesture.distance, ...gesture.middle);
    } else if (!second) {
      const dx = x - gesture.start[0];
      const dy = y - gesture.start[1];
      if (Math.hypot(dx, dy) > 6) gesture.moved = true;
      if (gesture.moved && gesture.view.scale > 1) {
        view = { ...gesture.view, x: gesture.view.x + dx, y: gesture.view.y + dy };
        draw();
      }
    }
  });
  const lift = (event) => {
    if (!pointers.delete(event.pointerId) || !map) return;
    if (pointers.size || gesture.moved) { if (!pointers.size) gesture = null; return; }
    const point = nearest(...local(event), REACH[event.pointerType] || REACH.mouse);
    // a click searches at once; a tap shows the photo first, a second tap on it (or its link) searches
    if (point && (event.pointerType === "mouse" || point === picked)) location.href = searchUrl(point);
    else pick(point);
  };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", (event) => { pointers.delete(event.pointerId); gesture = null; });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoom(event.deltaY < 0 ? 1.25 : 0.8, ...local(event));
  }, { passive: false });
  canvas.addEventListener("keydown", keyOnMap);
  window.addEventListener("resize", () => { if (map) resize(); });
}

// arrow keys go to the nearest photo in that direction, Enter searches from it, + and - zoom
function keyOnMap(event) {
  if (!map || !map.points.length) return;
  const directions = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (event.key === "Enter" && picked) { location.href = searchUrl(picked); return; }
  if (event.key === "+" || event.key === "-") {
    const canvas = $("map");
    zoom(event.key === "+" ? 1.25 : 0.8, canvas.clientWidth / 2, canvas.clientHeight / 2);
    return;
  }
  const direction = directions[event.key];
  if (!direction) return;
  event.preventDefault();
  if (!picked) { pick(map.points[0]); return; }
  const [fromX, fromY] = place(picked);
  let best = null;
  let bestCost = Infinity;
  for (const point of map.points) {
    const [x, y] = place(point);
    const along = (x - fromX) * direction[0] + (y - fromY) * direction[1];
    if (point === picked || along <= 0) continue;
    const across = Math.abs((x - fromX) * direction[1] - (y - fromY) * direction[0]);
    const cost = along + 2 * across;
    if (cost < bestCost) { best = point; bestCost = cost; }
  }
  if (best) pick(best);
}

// --- contact sheets and pictures as a grid -----------------------------------------------------------------------
function describeArtifact(artifact) {
  const cluster = artifact.name.match(/^cluster-(\d+)\./);
  if (cluster) return `contact sheet of cluster ${Number(cluster[1])}`;
  const known = { "map.png": "the map, coloured by label", "map-thumbnails.png": "the map with photos drawn on it",
    "classifier-confusion.png": "the classifier's confusion matrix" };
  return known[artifact.name] || artifact.name;
}

async function showArtifacts() {
  const artifacts = await api(`/api/indexes/${encodeURIComponent(indexName())}/artifacts`).catch(() => []);
  const list = $("artifacts");
  list.replaceChildren();
  const ordered = [...artifacts].sort((a, b) => (a.folder === "clusters" ? 0 : 1) - (b.folder === "clusters" ? 0 : 1));
  for (const artifact of ordered) {
    const item = document.createElement("li");
    const figure = document.createElement("figure");
    const link = document.createElement("a");
    link.href = artifact.url;
    link.target = "_blank";
    link.rel = "noopener";
    const caption = document.createElement("figcaption");
    caption.textContent = `${describeArtifact(artifact)} (${artifact.folder}/${artifact.name})`;
    if (artifact.type.startsWith("image/")) {
      const image = document.createElement("img");
      image.src = artifact.url;
      image.alt = describeArtifact(artifact);
      image.loading = "lazy";
      link.append(image);
    } else {
      link.textContent = artifact.type === "text/html" ? "open as a page of its own" : "open";
    }
    figure.append(link, caption);
    item.append(figure);
    list.append(item);
  }
  $("sheets-panel").hidden = !artifacts.length;
  return artifacts.length > 0;
}

wireMap();
loadIndexes().catch((error) => { $("status").textContent = error.message; });
