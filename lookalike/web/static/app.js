// The search page: pick an index, give a query (a file chosen, dropped or pasted, random, a result, or words where
// the index's model reads them), show the most similar images; a viewer for each result; the search kept in the URL,
// so reload, Back and links repeat it.
"use strict";

const $ = (id) => document.getElementById(id);
let indexes = {};
let limits = { max_k: 1000, max_upload_bytes: 20 * 1024 * 1024 }; // the server's defaults until /api/limits answers
// {kind: "upload", file, token}, {kind: "id", id}, {kind: "random"} or {kind: "text"} (the words alone); re-run when a
// control changes. Words typed in "Describe it" go with every query (with a photo: a mixed query, TEXT_WEIGHT).
let lastQuery = null;
let latestSearch = 0; // only the answer to the latest search is shown (an older one may arrive later)
let shownKey = null; // the index, query and options of what is on screen: a control re-runs only when they differ
let shownMatches = []; // the results on screen, in order, for the viewer
let shownMethod = ""; // the method that scored them
let viewing = -1; // the position of the result in the viewer
let viewerOpener; // what had focus before the viewer opened (null: the results get it); undefined once placed
const BUILT_IN_METHODS = ["cosine", "euclidean"]; // every index has these; the others are learned for it
const MiB = 1024 * 1024;
const CLUSTER_LABEL = "cluster"; // the label each image's cluster is stored under (organise.clustering)
const CAPTURE_TERM = /^\s*(taken\s*(>=|<=|>|<|=)|camera\s*=)/i; // where terms on what the photos' EXIF says
const CHIPS_SHOWN = 24; // values of one label shown as chips before "more"
const UPLOADS_KEPT = 20; // uploaded queries kept in this browser, so that their links survive a reload
const DEFAULT_K = "12";
const TEXT_WEIGHT = "0.5"; // the words' share of a query that is a photo and words (ImageIndex.search's text_weight)

// one line per method: what it compares, and what its score means
const METHOD_HELP = {
  cosine: "cosine: how closely the two photos' feature vectors point the same way; 1 is the same photo, "
    + "values near 0 mean unrelated.",
  euclidean: "Euclidean: the straight-line distance between the feature vectors, scored 1 / (1 + distance); the "
    + "vectors have unit length, so it ranks as cosine does, on another scale.",
  projection: "projection (learned): cosine after a projection learned from this index's labels, so differences "
    + "the labels care about count most; the score is the probability that two photos match.",
  agreement: "agreement (learned): how far a classifier trained on this index's labels gives both photos the same "
    + "label; the score is the probability that they match.",
  logreg: "logreg (learned): a logistic regression trained on labelled pairs scores the nearest photos again; the "
    + "score is the probability that they match.",
  forest: "forest (learned): a random forest trained on labelled pairs scores the nearest photos again; the score "
    + "is the probability that they match.",
};
const learnedHelp = (name) => `${name} (learned): a similarity trained on this index's labels `
  + "(lookalike train-similarity) scores the photos; the score is the probability that two photos match.";
// a query the page does not send; the message says why
class Refused extends Error {}

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? JSON.stringify(body.detail).replace(/^"|"$/g, "") : response.statusText);
  return body;
}

function status(text, { error = false, busy = false } = {}) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
  $("status").classList.toggle("busy", busy);
  $("results").classList.toggle("stale", busy);
  $("results").setAttribute("aria-busy", String(busy));
}

const current = () => indexes[$("index").value];
const indexBase = () => `/api/indexes/${encodeURIComponent($("index").value)}`;
const thumbnailOf = (id) => `${indexBase()}/images/${id}/thumbnail`;

async function loadIndexes() {
  const [list, served] = await Promise.all([api("/api/indexes"), api("/api/limits").catch(() => null)]);
  if (served) limits = served;
  $("k").max = String(limits.max_k);
  const select = $("index");
  select.replaceChildren();
  for (const info of list) {
    indexes[info.name] = info;
    select.append(new Option(`${info.name} (${info.count} images)`, info.name));
  }
  showCapabilities();
  await restore(new URLSearchParams(location.search), "replace");
  if (!list.length) status("this server has no index", { error: true });
}

// an index's capabilities again (labels change when labels are imported or a classifier trained)
async function refreshIndex(name) {
  try {
    indexes[name] = await api(`/api/indexes/${encodeURIComponent(name)}`);
  } catch (error) { /* the list's copy is still there */ }
}

function showCapabilities() {
  const info = current();
  if (!info) return;
  const caps = info.capabilities;
  const method = $("method");
  const chosen = method.value;
  method.replaceChildren();
  for (const name of caps.methods) {
    method.append(new Option(BUILT_IN_METHODS.includes(name) ? name : name + " (learned)", name));
  }
  if (caps.methods.includes(chosen)) method.value = chosen;
  showExpansions(caps);
  showMethodHelp();
  $("text-field").hidden = !caps.text_search;
  $("filter-field").hidden = !caps.filters;
  const suggestions = $("filter-values");
  suggestions.replaceChildren();
  for (const [name, counts] of Object.entries(caps.labels || {})) {
    for (const [value, count] of Object.entries(counts)) {
      suggestions.append(new Option(`${count} images`, `${name}=${value}`));
    }
  }
  showChips(caps.labels || {});
  $("by-class-field").hidden = !caps.scopes.by_class;
  $("by-cluster-field").hidden = !caps.scopes.by_cluster;
}

// the index's expansion modes, each with the line it explains itself in; its augmentation in words
function showExpansions(caps) {
  const expand = $("expand");
  const chosen = expand.value;
  const modes = caps.expansions || {};
  expand.replaceChildren();
  for (const name of Object.keys(modes)) {
    expand.append(new Option(name === caps.expand ? `${name} (default)` : name, name));
  }
  expand.value = chosen in modes ? chosen : caps.expand;
  $("expand-field").hidden = !Object.keys(modes).length;
  const augmentation = $("augmentation");
  augmentation.textContent = caps.augmentation ? `index augmentation: ${caps.augmentation}` : "";
  augmentation.hidden = !caps.augmentation;
}

const expansionDefault = () => current()?.capabilities?.expand;

function showMethodHelp() {
  const name = $("method").value;
  const lines = [METHOD_HELP[name] || (name ? learnedHelp(name) : "")];
  const explained = current()?.capabilities?.expansions?.[$("expand").value];
  if (!$("expand-field").hidden && explained) lines.push(`Expansion ${$("expand").value}: ${explained}.`);
  $("method-help").textContent = lines.filter(Boolean).join(" ");
}

// --- label chips: the index's label values with their counts; pressing one adds NAME=VALUE to the filter ----
function showChips(labels) {
  const chips = $("chips");
  chips.replaceChildren();
  for (const [name, counts] of Object.entries(labels)) {
    const group = document.createElement("fieldset");
    group.className = "chip-group";
    const legend = document.createElement("legend");
    legend.textContent = name;
    group.append(legend);
    const values = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0], undefined, { numeric: true }));
    values.forEach(([value, count], position) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.dataset.name = name;
      chip.dataset.value = value;
      chip.setAttribute("aria-pressed", "false");
      chip.setAttribute("aria-label", `${name} ${value}, ${count} images`);
      chip.hidden = position >= CHIPS_SHOWN;
      const text = document.createElement("span");
      text.textContent = value;
      const number = document.createElement("span");
      number.className = "count";
      number.textContent = count;
      chip.append(text, number);
      chip.addEventListener("click", () => toggleChip(name, value));
      group.append(chip);
    });
    if (values.length > CHIPS_SHOWN) {
      const more = document.createElement("button");
      more.type = "button";
      more.className = "chip more";
      more.textContent = `${values.length - CHIPS_SHOWN} more`;
      more.addEventListener("click", () => {
        for (const chip of group.querySelectorAll(".chip[hidden]")) chip.hidden = false;
        more.remove();
      });
      group.append(more);
    }
    chips.append(group);
  }
  syncChips();
}

// the terms typed in the filter field, as they are (no checking): [name, value] pairs
function typedTerms() {
  return $("filter").value.split(",").map((t) => t.trim()).filter(Boolean).map((term) => {
    const equals = term.indexOf("=");
    return equals < 0 ? [term, ""] : [term.slice(0, equals).trim(), term.slice(equals + 1).trim()];
  });
}

const sameText = (a, b) => a.toLowerCase() === b.toLowerCase();

function toggleChip(name, value) {
  const terms = typedTerms();
  const kept = terms.filter(([n, v]) => !(sameText(n, name) && sameText(v, value)));
  if (kept.length === terms.length) kept.push([name, value]);
  $("filter").value = kept.map(([n, v]) => `${n}=${v}`).join(", ");
  syncChips();
  rerun();
}

// a chip is pressed while the filter field holds its term, whatever the case
function syncChips() {
  const terms = typedTerms();
  for (const chip of $("chips").querySelectorAll(".chip[data-name]")) {
    const on = terms.some(([n, v]) => sameText(n, chip.dataset.name) && sameText(v, chip.dataset.value));
    chip.setAttribute("aria-pressed", String(on));
    if (on) chip.hidden = false;
  }
  $("filter-count").textContent = terms.length ? `(${terms.length})` : "";
}

// --- the options, checked on the page before anything is sent ------------------------------
// [name, value] pairs with the names of ImageIndex.search's options; `where` may repeat (same name: either value)
function searchOptions(notes) {
  const options = [["k", kOption(notes)], ["method", $("method").value]];
  if (!$("filter-field").hidden) {
    for (const term of whereTerms($("filter").value, current().capabilities.labels)) options.push(["where", term]);
    for (const term of takenTerms()) options.push(["where", term]);
  }
  if ($("sort").value) options.push(["sort", $("sort").value]);
  if (!$("expand-field").hidden && $("expand").value !== expansionDefault()) options.push(["expand", $("expand").value]);
  if (!$("by-class-field").hidden && $("by-class").checked) options.push(["by_class", "1"]);
  if (!$("by-cluster-field").hidden && $("by-cluster").checked) options.push(["by_cluster", "1"]);
  return options;
}

// the words typed in "Describe it", where the index reads words: alone they are the query, with a photo they mix
function wordOptions(query) {
  const words = $("text-field").hidden ? "" : $("text").value.trim();
  if (!words) {
    if (query.kind === "text") throw new Refused("type some words to search by, or give a photo");
    return [];
  }
  return query.kind === "text" ? [["text", words]] : [["text", words], ["text_weight", TEXT_WEIGHT]];
}

const wordsIn = (options) => options.find(([name]) => name === "text")?.[1] || "";

// k as a whole number from 1 to the server's most; above that it is lowered (and the field says so)
function kOption(notes) {
  if ($("k-auto").checked) return "auto"; // k-auto: as many as belong to the query (lookalike.cutoff)
  const field = $("k");
  const text = field.value.trim();
  const most = limits.max_k;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new Refused(`k must be a whole number from 1 to ${most} (it is ${text ? text : "empty"}); nothing searched`);
  }
  if (Number(text) > most) {
    field.value = String(most);
    notes.push(`k lowered from ${text} to ${most}, the most one search returns`);
    return String(most);
  }
  return String(Number(text));
}

// NAME=VALUE terms, comma-separated, matched without regard to case against the index's own label names and
// values (a value spelled in several cases matches them all); an unknown one is refused with what there is
function whereTerms(text, labels) {
  const terms = [];
  for (const term of text.split(",").map((t) => t.trim()).filter(Boolean)) {
    if (CAPTURE_TERM.test(term)) { terms.push(term); continue; } // taken and camera: the server checks them
    const equals = term.indexOf("=");
    const name = term.slice(0, equals).trim();
    const value = term.slice(equals + 1).trim();
    if (equals < 0 || !name || !value) {
      throw new Refused(`a filter looks like NAME=VALUE (e.g. label=dress), not "${term}"`);
    }
    if (!labels) { terms.push(`${name}=${value}`); continue; } // the server did not list its labels: as typed
    const known = labels[name] ? name : Object.keys(labels).find((n) => sameText(n, name));
    if (!known) throw new Refused(unknownLabel(name, labels));
    const values = Object.keys(labels[known]).filter((v) => sameText(v, value));
    if (!values.length) throw new Refused(unknownValue(known, value, labels[known]));
    terms.push(...values.map((v) => `${known}=${v}`));
  }
  return terms;
}

// the date range as where terms: taken>=FROM, and taken<TO's next day (so TO is included whole)
function takenTerms() {
  const from = $("taken-from").value;
  const to = $("taken-to").value;
  if (from && to && to < from) throw new Refused(`the date range ends (${to}) before it starts (${from})`);
  return [from && `taken>=${from}`, to && `taken<${dayAfter(to)}`].filter(Boolean);
}

function dayAfter(day) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + 1);
  return date.toISOString().slice(0, 10);
}

function dayBefore(day) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() - 1);
  return date.toISOString().slice(0, 10);
}

// the range a URL's where terms give (the terms the page itself sends), and the other terms as typed
function restoreTaken(terms) {
  const range = { from: "", to: "" };
  const rest = terms.filter((term) => {
    const from = /^taken>=(\d{4}-\d{2}-\d{2})$/.exec(term);
    const to = /^taken<(\d{4}-\d{2}-\d{2})$/.exec(term);
    if (from) range.from = from[1];
    if (to) range.to = dayBefore(to[1]);
    return !from && !to;
  });
  $("taken-from").value = range.from;
  $("taken-to").value = range.to;
  return rest;
}

function unknownLabel(name, labels) {
  const names = Object.keys(labels);
  if (!names.length) return `this index has no labels, so there is nothing to filter by "${name}"`;
  const listed = names.map((n) => `${n} (${firstFew(Object.keys(labels[n]))})`).join("; ");
  return `no label "${name}" in this index; its labels: ${listed}`;
}

function unknownValue(name, value, counts) {
  const listed = firstFew(Object.entries(counts).map(([v, count]) => `${v} ${count}`));
  return `no image has ${name}=${value}; the values of ${name}: ${listed}`;
}

function firstFew(items, shown = 12) {
  if (items.length <= shown) return items.join(", ");
  return `${items.slice(0, shown).join(", ")} and ${items.length - shown} more`;
}

// a file the server would refuse is not uploaded at all; the message gives its size, not where reading stopped
function tooLarge(file) {
  const limit = limits.max_upload_bytes;
  if (file.size <= limit) return null;
  return `${file.name}: ${(file.size / MiB).toFixed(1)} MB; the limit is ${+(limit / MiB).toFixed(1)} MB`;
}

// a refusal replaces whatever was on screen; an answer still on its way is not shown over it
function refuse(message) {
  latestSearch++;
  clearResults();
  status(message, { error: true });
}

// --- searching --------------------------------------------------------------------------------
// `byControl`: a control changed (the same search on screen is not run again, and focus stays on the control);
// `history`: what the answer does to the browser's history: "push" a new entry, "replace" this one, or "none"
async function search(query, { byControl = false, history = "push" } = {}) {
  lastQuery = query;
  const notes = [];
  let options;
  try {
    options = [...searchOptions(notes), ...wordOptions(query), ...exampleOptions(query)]; // region.js: box, examples
  } catch (error) {
    if (!(error instanceof Refused)) throw error;
    refuse(error.message); // lastQuery stays: mending the control searches again
    return;
  }
  const key = JSON.stringify([$("index").value, query.kind, query.id, query.token, options]);
  if (byControl && key === shownKey) return; // on screen already, or on its way
  shownKey = key;
  const mine = ++latestSearch;
  showPending(query, wordsIn(options));
  try {
    let result;
    if (query.kind === "upload") {
      const form = new FormData();
      form.append("image", query.file);
      for (const [name, value] of options) form.append(name, value);
      result = await api(`${indexBase()}/search`, { method: "POST", body: form });
    } else {
      const params = new URLSearchParams(options);
      if (query.kind === "random") params.set("random", "true");
      else if (query.kind === "id") params.set("id", query.id);
      result = await api(`${indexBase()}/search?${params}`);
    }
    if (mine !== latestSearch) return;
    if (query.kind === "random") {
      query = { kind: "id", id: result.query_id };
      lastQuery = query;
      shownKey = JSON.stringify([$("index").value, "id", result.query_id, undefined, options]);
    }
    show(result, query, notes, wordsIn(options));
    remember(query, options, history);
    // a new query: the clicked tile is gone, the file dialog closed; keyboard and screen reader go on at the results
    if (!byControl && !$("results-heading").hidden) $("results-heading").focus({ preventScroll: true });
  } catch (error) {
    if (mine !== latestSearch) return;
    clearResults();
    shownKey = key; // the error is the answer on screen: the same control event twice sends it once
    status(error.message, { error: true });
  }
}

// the query on screen at once, before its answer: the photo given, a spinner, the old results dimmed
function showPending(query, words) {
  if (query.kind === "upload") setQueryImage(query.file, `query: ${query.file.name}`);
  else if (query.kind === "id") setQueryImage(thumbnailOf(query.id), `query: ${query.name || `image ${query.id}`}`);
  else setQueryImage(null, "");
  const name = { upload: query.file?.name, id: query.name || `image ${query.id}`, random: "a random image…" }[query.kind];
  $("query-name").textContent = withWords(name, words);
  $("query").classList.toggle("words", query.kind === "text"); // words alone: no picture to show
  $("query-class").textContent = "";
  $("timings").textContent = "";
  $("confidence").hidden = true;
  $("query").hidden = false;
  status("searching…", { busy: true });
}

// the query's picture: a file (shown from memory) or a URL; the same file is not read again
function setQueryImage(source, alt) {
  const image = $("query-image");
  if (source instanceof Blob) {
    if (image.dataset.file !== source.name + source.size + source.lastModified || !image.src.startsWith("blob:")) {
      if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
      image.src = URL.createObjectURL(source);
      image.dataset.file = source.name + source.size + source.lastModified;
    }
  } else {
    if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
    delete image.dataset.file;
    if (source) image.src = source; else image.removeAttribute("src");
  }
  image.alt = alt || "query image";
}

// no query panel, no results: nothing on screen may belong to another query than the controls show
function clearResults() {
  setQueryImage(null, "");
  $("query").hidden = true;
  $("results-heading").hidden = true;
  $("results").replaceChildren();
  $("confidence").hidden = true;
  clearExamples();
  shownMatches = [];
  shownKey = null;
  status("");
}

// a query's name, and the words that go with it: 'hat/0a1b.jpg + “but red”', or the words alone
const withWords = (name, words) => [name, words && `“${words}”`].filter(Boolean).join(" + ");

function show(result, query, notes, words) {
  // an indexed query's path, without the words the server appends to it ('PATH + "WORDS"')
  const path = words && result.query.endsWith(` + "${words}"`) ? result.query.slice(0, -words.length - 5) : result.query;
  const name = query.kind === "upload" ? query.file.name : query.kind === "text" ? "" : shownName(path);
  if (query.kind === "upload") setQueryImage(query.file, `query: ${name}`);
  else if (query.kind === "text") setQueryImage(null, "");
  else setQueryImage(result.query_thumbnail, "query: " + describe(query.labels || {}, path));
  $("query").hidden = false;
  $("query").classList.toggle("words", query.kind === "text");
  $("query-name").textContent = withWords(name, words);
  const predicted = result.predicted_class;
  $("query-class").textContent = predicted
    ? "predicted: " + Object.entries(predicted).map(([c, p]) => `${c} ${(p * 100).toFixed(0)}%`).join(", ") : "";
  $("timings").textContent = Object.entries(result.timings_ms).map(([n, ms]) => `${n} ${ms.toFixed(1)} ms`).join(" · ");
  shownMatches = result.matches;
  shownMethod = result.method;
  const grid = $("results");
  grid.replaceChildren(...result.matches.map(resultTile));
  $("results-heading").hidden = !result.matches.length;
  const found = result.matches.length ? `${result.matches.length} most similar (${result.method})` : "no matches";
  status([found, ...notes].join(" · "));
  showConfidence(result);
  showExamples(query);
  window.scrollTo({ top: 0, behavior: "smooth" });
}

// the search's own judgement (lookalike.confidence, the same in Python, the CLI and HTTP): a doubtful answer says
// so, and an exact or near copy is named
function showConfidence(result) {
  $("confidence").textContent = result.note || "";
  $("confidence").hidden = !result.note;
  $("confidence").classList.toggle("doubtful", Boolean(result.low_confidence));
}

// a path as visitors see it: the file and its folder, never where the server keeps it
function shownName(path) {
  return path.split("/").slice(-2).join("/").replace(/#t=([\d.]+)$/, (_, time) => ` @ ${shownTime(Number(time))}`);
}

// a video frame's time as people read it: 0:12.5, 1:02:03.0 (lookalike.video.shown_time)
function shownTime(seconds) {
  const tenths = Math.round(seconds * 10), hours = Math.floor(tenths / 36000), minutes = Math.floor(tenths / 600) % 60;
  const rest = ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

// a video's frame shows its time on the tile; the viewer plays the video from there
function frameTime(match) {
  const time = document.createElement("span");
  time.className = "frame-time";
  time.textContent = `▶ ${shownTime(match.time)}`;
  time.title = `a frame of a video, ${shownTime(match.time)} in`;
  return time;
}

function showVideo(match) {
  const video = $("viewer-video");
  $("viewer-image").hidden = Boolean(match.video);
  video.hidden = !match.video;
  video.pause();
  if (!match.video) {
    video.removeAttribute("src");
    return;
  }
  video.onloadedmetadata = () => { video.currentTime = match.time; };
  video.src = `${match.video}#t=${match.time}`;
  video.setAttribute("aria-label", `video ${shownName(match.path)}`);
  $("viewer-original").href = `${match.video}#t=${match.time}`;
}

// what an image shows, for people who do not see it: its label values (or its folder) and a short file name;
// the cluster number lookalike stores as a label says nothing about the picture
function describe(labels, path) {
  const parts = path.split("/");
  const file = parts.pop();
  const dot = file.lastIndexOf(".");
  const stem = dot > 0 ? file.slice(0, dot) : file;
  const short = /^[0-9a-f-]{16,}$/i.test(stem) ? `${stem.slice(0, 4)}…${file.slice(stem.length)}` : file;
  const values = Object.entries(labels).filter(([name]) => name !== CLUSTER_LABEL).map(([, value]) => value);
  return [values.length ? values.join(", ") : parts.pop(), short].filter(Boolean).join(" — ");
}

const tileLabel = (match) => match.labels.label || Object.values(match.labels)[0]
  || match.path.split("/").slice(-2, -1)[0] || "";

function resultTile(match, position) {
  const item = document.createElement("li");
  item.dataset.id = match.id;
  const described = describe(match.labels, match.path);
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.title = `${shownName(match.path)}\nclick to view`;
  open.setAttribute("aria-label", `${described}, similarity ${(match.similarity ?? match.score).toFixed(3)}: view`);
  open.dataset.id = match.id;
  const image = document.createElement("img");
  image.src = match.thumbnail;
  image.alt = described;
  image.loading = "lazy";
  open.append(image);
  open.addEventListener("click", () => openViewer(position));
  const caption = document.createElement("div");
  caption.className = "caption";
  const score = document.createElement("span");
  score.className = "score";
  const similarity = match.similarity ?? match.score;
  score.textContent = similarity.toFixed(3);
  score.title = `similarity ${similarity.toFixed(3)} (1 is the same photo); ranking score ${match.score.toFixed(3)}`;
  const same = document.createElement("span");
  same.className = "same";
  same.textContent = match.same_photo ? "same photo" : "";
  same.hidden = !match.same_photo;
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = tileLabel(match);
  const taken = document.createElement("span");
  taken.className = "taken";
  taken.textContent = match.taken ? match.taken.slice(0, 10) : "";
  taken.title = takenText(match);
  taken.hidden = !match.taken;
  const similar = document.createElement("button");
  similar.type = "button";
  similar.className = "similar";
  similar.textContent = "similar";
  similar.title = "search from this image";
  similar.setAttribute("aria-label", `search from ${described}`);
  similar.addEventListener("click", () => searchFrom(match));
  caption.append(score, same, label, taken, similar);
  if (lastQuery) caption.append(...exampleButtons(match, described)); // more / less like this (region.js)
  if (lastQuery && lastQuery.kind !== "text") caption.append(whySimilarButton(match, described));
  if (match.video) open.append(frameTime(match));
  item.append(open, caption);
  return item;
}

// when (and with what) a photo was taken, in words: "taken 2021-06-01 14:30 (EXIF), Canon EOS 5D"
function takenText(match) {
  if (!match.taken) return "";
  const source = match.taken_source === "exif" ? "EXIF date" : "file date: no date in its EXIF";
  return [`taken ${match.taken.replace("T", " ").slice(0, 16)} (${source})`, match.camera].filter(Boolean).join(", ");
}

const searchFrom = (match) => search({ kind: "id", id: match.id, labels: match.labels, name: shownName(match.path) });

// --- why similar? (explain): heat maps over the query and a result, from the index's network, as one picture ----
function whySimilarButton(match, described) {
  const why = document.createElement("button");
  why.type = "button";
  why.className = "why-similar";
  why.textContent = "why similar?";
  why.title = "show which regions make the query and this image similar";
  why.setAttribute("aria-label", `why is ${described} similar to the query?`);
  const query = lastQuery;
  why.addEventListener("click", () => explainPair(query, match, described));
  return why;
}

async function explainPair(query, match, described) {
  const dialog = $("explain");
  const image = $("explain-image");
  $("explain-title").textContent = `why similar: the query and ${described}`;
  $("explain-status").textContent = "working out which regions match …";
  image.removeAttribute("src");
  image.alt = `heat maps over the query and ${described}: warm regions give most of the similarity`;
  if (!dialog.open) dialog.showModal();
  let response;
  if (query.kind === "upload") {
    const form = new FormData();
    form.append("a_image", query.file);
    form.append("b", match.id);
    response = await fetch(`${indexBase()}/explain`, { method: "POST", body: form });
  } else {
    response = await fetch(`${indexBase()}/explain?${new URLSearchParams({ a: query.id, b: match.id })}`);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("explain-status").textContent = body.detail || response.statusText;
    return;
  }
  if (image.dataset.url) URL.revokeObjectURL(image.dataset.url);
  image.dataset.url = URL.createObjectURL(await response.blob());
  image.src = image.dataset.url;
  $("explain-status").textContent = "warm regions give most of the similarity; cool ones little";
}

function wireExplain() {
  const dialog = $("explain");
  $("explain-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); }); // the backdrop
  $("k-auto").addEventListener("change", () => { $("k").disabled = $("k-auto").checked; });
}

// --- the viewer: one result large, with its path, labels and score; arrows browse, Esc closes ---------------
function openViewer(position) {
  const viewer = $("viewer");
  if (!viewer.open) {
    viewerOpener = document.activeElement;
    viewer.showModal();
  }
  showInViewer(position);
  // focus inside, where the arrow keys are heard: the dialog's own choice may be the video, hidden for a photo
  if (!viewer.contains(document.activeElement)) $("viewer-search").focus();
}

function showInViewer(position) {
  viewing = (position + shownMatches.length) % shownMatches.length;
  const match = shownMatches[viewing];
  const image = $("viewer-image");
  image.src = match.thumbnail; // at once; the original replaces it once loaded
  image.alt = describe(match.labels, match.path);
  const original = new Image();
  original.onload = () => { if (shownMatches[viewing] === match) image.src = match.file; };
  original.src = match.file;
  $("viewer-title").textContent = shownName(match.path);
  $("viewer-place").textContent = `${viewing + 1} of ${shownMatches.length} · similarity ${(match.similarity ?? match.score).toFixed(3)} `
    + `(${shownMethod})` + (match.taken ? ` · ${takenText(match)}` : "");
  const list = $("viewer-labels");
  list.replaceChildren();
  for (const [name, value] of Object.entries(match.labels)) {
    const term = document.createElement("dt");
    term.textContent = name;
    const description = document.createElement("dd");
    description.textContent = value;
    list.append(term, description);
  }
  $("viewer-original").href = match.file;
  showVideo(match);
}

function wireViewer() {
  const viewer = $("viewer");
  $("viewer-next").addEventListener("click", () => showInViewer(viewing + 1));
  $("viewer-previous").addEventListener("click", () => showInViewer(viewing - 1));
  $("viewer-close").addEventListener("click", closeViewer);
  $("viewer-search").addEventListener("click", () => {
    const match = shownMatches[viewing];
    viewerOpener = null; // the tile that opened it goes with the old results
    closeViewer();
    searchFrom(match);
  });
  viewer.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight") { event.preventDefault(); showInViewer(viewing + 1); }
    if (event.key === "ArrowLeft") { event.preventDefault(); showInViewer(viewing - 1); }
    if (event.key === "Escape") { event.preventDefault(); closeViewer(); }
  });
  viewer.addEventListener("click", (event) => { if (event.target === viewer) closeViewer(); }); // the backdrop
  viewer.addEventListener("close", focusAfterViewer); // closed some other way (a close request the page did not see)
}

// closed here, focus is placed at once (the dialog's "close" event comes a task later, after the browser has put
// focus back on the opener itself)
function closeViewer() {
  if (!$("viewer").open) return;
  $("viewer-video").pause();
  $("viewer").close();
  focusAfterViewer();
}

// focus goes to the tile of the result last viewed, or to the results when the tiles are gone
function focusAfterViewer() {
  if (viewerOpener === undefined) return; // placed already
  const tile = $("results").querySelector(`li[data-id="${shownMatches[viewing]?.id}"] .open`);
  (viewerOpener && document.contains(viewerOpener) ? tile || viewerOpener : $("results-heading")).focus();
  viewerOpener = undefined;
}

// --- the search in the URL: index, query (an indexed id, or an upload kept in this browser), options ---------
function stateOf(query, options) {
  const params = new URLSearchParams({ index: $("index").value });
  if (query?.kind === "id") params.set("id", query.id);
  if (query?.kind === "upload" && query.token) params.set("upload", query.token);
  for (const [name, value] of options) params.append(name, value);
  return `?${params}`;
}

function remember(query, options, history) {
  const url = stateOf(query, options);
  if (history === "none" || url === location.search) return;
  window.history[history === "replace" ? "replaceState" : "pushState"]({}, "", url);
}

// the controls and the query from a URL's parameters; unknown or missing ones keep the page's defaults
async function restore(params, history) {
  const name = params.get("index");
  if (name && indexes[name] && name !== $("index").value) {
    $("index").value = name;
    showCapabilities();
    await refreshIndex(name);
    showCapabilities();
  }
  const method = params.get("method");
  if (method && [...$("method").options].some((o) => o.value === method)) $("method").value = method;
  const expand = params.get("expand");
  $("expand").value = [...$("expand").options].some((o) => o.value === expand) ? expand : expansionDefault() || "";
  showMethodHelp();
  $("text").value = params.get("text") || "";
  $("k-auto").checked = params.get("k") === "auto";
  $("k").disabled = $("k-auto").checked;
  $("k").value = params.get("k") === "auto" ? DEFAULT_K : params.get("k") || DEFAULT_K;
  $("filter").value = restoreTaken(params.getAll("where")).join(", ");
  const sort = params.get("sort");
  $("sort").value = [...$("sort").options].some((o) => o.value === sort) ? sort : "";
  syncChips();
  if (params.getAll("where").length) $("filter-field").open = true;
  $("by-class").checked = params.has("by_class");
  $("by-cluster").checked = params.has("by_cluster");
  if (params.has("id") && /^\d+$/.test(params.get("id"))) {
    await search({ kind: "id", id: Number(params.get("id")), ...examplesFrom(params) }, { history });
  } else if (params.has("upload")) {
    const file = await keptUpload(params.get("upload"));
    if (file) await search({ kind: "upload", file, token: params.get("upload"), ...examplesFrom(params) }, { history });
    else {
      lastQuery = null;
      refuse("this link's query is a photo uploaded in another browser (uploads are not kept on the server): "
        + "drop or paste it here to search again");
    }
  } else if (params.get("text")?.trim() && !$("text-field").hidden) {
    await search({ kind: "text" }, { history });
  } else {
    lastQuery = null;
    clearResults();
  }
}

// uploaded queries are kept in this browser's IndexedDB under a random token, the last UPLOADS_KEPT of them
function uploadsDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open("lookalike-uploads", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("uploads");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function keepUpload(token, file) {
  const database = await uploadsDatabase();
  const store = database.transaction("uploads", "readwrite").objectStore("uploads");
  store.put({ file, kept: Date.now() }, token);
  const all = [];
  store.openCursor().onsuccess = (event) => {
    const cursor = event.target.result;
    if (cursor) { all.push([cursor.value.kept, cursor.key]); cursor.continue(); return; }
    all.sort((a, b) => b[0] - a[0]).slice(UPLOADS_KEPT).forEach(([, key]) => store.delete(key));
  };
}

async function keptUpload(token) {
  try {
    const database = await uploadsDatabase();
    return await new Promise((resolve) => {
      const request = database.transaction("uploads").objectStore("uploads").get(token);
      request.onsuccess = () => resolve(request.result?.file || null);
      request.onerror = () => resolve(null);
    });
  } catch (error) {
    return null; // no IndexedDB (a private window may refuse it): the link cannot be followed here
  }
}

function newToken() {
  return [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// --- giving a query: a file chosen (button, Enter or Space on the drop zone), dropped anywhere, pasted, random --
function searchFile(picked) {
  if (!picked) return;
  const refused = tooLarge(picked);
  if (refused) { lastQuery = null; refuse(refused); return; } // it never became a query
  const token = newToken();
  keepUpload(token, picked).catch(() => {}); // without IndexedDB the search works, only its link does not
  search({ kind: "upload", file: picked, token });
}

function wireQueries() {
  const drop = $("drop");
  const file = $("file");
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  file.addEventListener("change", () => { searchFile(file.files[0]); file.value = ""; }); // the same file again: a change
  $("choose").addEventListener("click", () => file.click());
  drop.addEventListener("keydown", (event) => {
    if (event.target === drop && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      file.click();
    }
  });
  // the whole window is the drop target; without this, a photo dropped outside the zone opens in a new tab
  window.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return; // dragged text may still go into a text field
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    document.body.classList.add("dragging");
  });
  window.addEventListener("dragleave", (event) => { if (!event.relatedTarget) document.body.classList.remove("dragging"); });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    document.body.classList.remove("dragging");
    searchFile(event.dataTransfer.files[0]);
  });
  // Ctrl+V / Cmd+V anywhere: an image on the clipboard is the query (text pasted into a field stays text)
  document.addEventListener("paste", (event) => {
    const image = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (!image) return;
    event.preventDefault();
    searchFile(image.name && image.name !== "image.png" ? image : new File([image], "pasted image.png", { type: image.type }));
  });
  $("random").addEventListener("click", () => search({ kind: "random" }));
}

const rerun = () => lastQuery && search(lastQuery, { byControl: true });

// Enter in "Describe it": the words alone are the query, or they change the photo on screen; no words, no text query
function searchWords() {
  const words = $("text").value.trim();
  if (lastQuery && lastQuery.kind !== "text") { rerun(); return; }
  if (words) { search({ kind: "text" }, { byControl: true }); return; } // focus stays in the box, to refine
  if (lastQuery) { lastQuery = null; clearResults(); remember(null, [], "push"); }
}

function wireControls() {
  $("index").addEventListener("change", async () => {
    lastQuery = null;
    clearResults();
    $("filter").value = ""; // another index has other labels
    $("text").value = ""; // the words belong to the query, which is gone
    showCapabilities();
    remember(null, [], "push");
    await refreshIndex($("index").value); // its labels as they are now
    showCapabilities();
  });
  $("method").addEventListener("change", showMethodHelp);
  $("expand").addEventListener("change", showMethodHelp);
  for (const id of ["method", "k", "k-auto", "expand", "filter", "by-class", "by-cluster", "sort", "taken-from", "taken-to"]) {
    $(id).addEventListener("change", rerun);
  }
  $("filter").addEventListener("input", syncChips);
  // Enter in a text field applies it at once (also when the value did not change since it was last left)
  $("controls").addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.target.tagName !== "INPUT") return;
    if (event.target.id === "text") { event.preventDefault(); searchWords(); return; }
    rerun(); // a change may follow: sent once
  });
  $("controls").addEventListener("submit", (event) => { event.preventDefault(); rerun(); });
  window.addEventListener("popstate", () => restore(new URLSearchParams(location.search), "none"));
}

wireQueries();
wireControls();
wireViewer();
wireExplain();
loadIndexes().catch((error) => status(error.message, { error: true }));
