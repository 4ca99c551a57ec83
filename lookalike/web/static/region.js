// A part of the query photo and several examples with signs (issue 27, items 1-2), on the search page (app.js):
// a box drawn over the query photo (mouse, pen or finger: pointer events) searches from that part of it, in pixels
// of the upright photo (`crop`); "more like this" / "less like this" on a result add it as an example (`more_id` /
// `not_id`), shown as removable chips above the results. A query from a result ("similar", "search from this") starts
// afresh: its own box, no examples.
"use strict";

const MIN_BOX = 8; // a drag shorter than this many screen pixels is a click, not a box

// the query's crop and examples as search options (the names ImageIndex.search takes)
function exampleOptions(query) {
  const options = [];
  if (query.crop) options.push(["crop", query.crop.join(",")]);
  for (const example of query.more || []) options.push(["more_id", String(example.id)]);
  for (const example of query.less || []) options.push(["not_id", String(example.id)]);
  return options;
}

// the crop and examples a link carries (names of examples are not in it: they show as "image N")
function examplesFrom(params) {
  const query = {};
  const crop = (params.get("crop") || "").split(",").map(Number);
  if (crop.length === 4 && crop.every((n) => Number.isInteger(n) && n >= 0)) query.crop = crop;
  const ids = (name) => params.getAll(name).filter((id) => /^\d+$/.test(id)).map((id) => ({ id: Number(id) }));
  query.more = ids("more_id");
  query.less = ids("not_id");
  return query;
}

// a result as an example: "more like this" adds it to the positives, "less like this" to the negatives
function exampleButtons(match, described) {
  return [["more", "more like this", "more"], ["less", "less like this", "less"]].map(([sign, title, text]) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `example ${sign}`;
    button.textContent = text;
    button.title = title;
    button.setAttribute("aria-label", `${title}: ${described}`);
    button.addEventListener("click", () => addExample(sign, match));
    return button;
  });
}

function addExample(sign, match) {
  if (!lastQuery || lastQuery.kind === "random") return;
  const example = { id: match.id, name: shownName(match.path) };
  const others = (list) => (list || []).filter((e) => e.id !== match.id); // an image is one sign at a time
  const query = { ...lastQuery, more: others(lastQuery.more), less: others(lastQuery.less) };
  query[sign] = [...query[sign], example];
  search(query);
}

function removeExample(sign, id) {
  if (!lastQuery) return;
  search({ ...lastQuery, [sign]: (lastQuery[sign] || []).filter((e) => e.id !== id) });
}

// the chips above the results and the box over the query photo, for the query on screen
function showExamples(query) {
  const chips = $("examples");
  const all = [...(query.more || []).map((e) => ["more", e]), ...(query.less || []).map((e) => ["less", e])];
  chips.replaceChildren(...all.map(([sign, example]) => exampleChip(sign, example)));
  chips.hidden = !all.length;
  showBox(query);
}

function exampleChip(sign, example) {
  const chip = document.createElement("button");
  chip.type = "button";
  chip.className = `chip example-chip ${sign}`;
  const name = example.name || `image ${example.id}`;
  chip.textContent = `${sign === "more" ? "+" : "−"} ${name} ×`;
  chip.title = `${sign === "more" ? "more" : "less"} like ${name}: click to remove`;
  chip.setAttribute("aria-label", `remove “${sign} like ${name}”`);
  chip.dataset.id = example.id;
  chip.addEventListener("click", () => removeExample(sign, example.id));
  return chip;
}

function clearExamples() {
  $("examples").replaceChildren();
  $("examples").hidden = true;
  $("crop-box").hidden = true;
  $("crop-clear").hidden = true;
}

// the box as fractions of the photo shown (kept with the query; from a link, worked out from the crop's pixels)
async function showBox(query) {
  const box = $("crop-box");
  $("crop-clear").hidden = !query.crop;
  $("query-frame").classList.toggle("drawable", query.kind === "upload" || query.kind === "id");
  if (!query.crop) { box.hidden = true; return; }
  if (!query.cropShare) {
    const [width, height] = await uprightSize(query);
    const [x, y, w, h] = query.crop;
    query.cropShare = [x / width, y / height, w / width, h / height];
  }
  placeBox(query.cropShare);
}

function placeBox([x, y, w, h]) {
  const box = $("crop-box");
  Object.assign(box.style, { left: `${x * 100}%`, top: `${y * 100}%`, width: `${w * 100}%`, height: `${h * 100}%` });
  box.hidden = false;
}

// the query photo's own size, upright (a browser shows a photo as its EXIF orientation says, as the server reads it):
// an upload's from its file, an indexed image's from its original (its thumbnail is smaller)
function uprightSize(query) {
  const shown = $("query-image");
  if (query.kind === "upload" && shown.naturalWidth) return Promise.resolve([shown.naturalWidth, shown.naturalHeight]);
  return new Promise((resolve, reject) => {
    const original = new Image();
    original.onload = () => resolve([original.naturalWidth, original.naturalHeight]);
    original.onerror = () => reject(new Error("the original photo could not be loaded to measure the box"));
    original.src = query.kind === "upload" ? URL.createObjectURL(query.file) : `${indexBase()}/images/${query.id}/file`;
  });
}

// drawing: press on the photo, drag, let go; the box is searched at once
function wireRegions() {
  const frame = $("query-frame");
  const box = $("crop-box");
  let start = null;
  const share = (event) => {
    const rect = $("query-image").getBoundingClientRect();
    return [Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
      Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height)), rect];
  };
  const spanned = (event) => {
    const [x, y] = share(event);
    return [Math.min(x, start[0]), Math.min(y, start[1]), Math.abs(x - start[0]), Math.abs(y - start[1])];
  };
  frame.addEventListener("pointerdown", (event) => {
    if (!frame.classList.contains("drawable") || !lastQuery || event.button > 0) return;
    event.preventDefault();
    frame.setPointerCapture(event.pointerId);
    start = share(event);
  });
  frame.addEventListener("pointermove", (event) => { if (start) placeBox(spanned(event)); });
  frame.addEventListener("pointercancel", () => { start = null; showBox(lastQuery); });
  frame.addEventListener("pointerup", async (event) => {
    if (!start) return;
    const drawn = spanned(event);
    const rect = start[2];
    start = null;
    if (drawn[2] * rect.width < MIN_BOX || drawn[3] * rect.height < MIN_BOX) { showBox(lastQuery); return; }
    searchBox(drawn).catch((error) => status(error.message, { error: true }));
  });
  $("crop-clear").addEventListener("click", () => {
    if (lastQuery) search({ ...lastQuery, crop: undefined, cropShare: undefined });
  });
  box.hidden = true;
}

async function searchBox(drawn) {
  const query = lastQuery;
  const [width, height] = await uprightSize(query);
  const x = Math.round(drawn[0] * width), y = Math.round(drawn[1] * height);
  const crop = [x, y, Math.max(1, Math.min(width - x, Math.round(drawn[2] * width))),
    Math.max(1, Math.min(height - y, Math.round(drawn[3] * height)))];
  await search({ ...query, crop, cropShare: drawn });
}

wireRegions();
