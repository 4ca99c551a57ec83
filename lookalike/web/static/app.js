// The search page: pick an index, give a query (upload, random, or a result), show the most similar images.
"use strict";

const $ = (id) => document.getElementById(id);
let indexes = {};
let lastQuery = null; // {kind: "upload", file}, {kind: "id", id} or {kind: "random"}; re-run when a control changes
let latestSearch = 0; // only the answer to the latest search is shown (an older one may arrive later)
let shownKey = null; // the index, query and options of what is on screen: a control re-runs only when they differ
let uploads = 0; // numbers each uploaded query, so that its key differs from another file's
const BUILT_IN_METHODS = ["cosine", "euclidean"]; // every index has these; the others are learned for it
const MAX_K = 1000; // the API's limit (search_api.MAX_K)
const MiB = 1024 * 1024;
const CLUSTER_LABEL = "cluster"; // the label each image's cluster is stored under (organise.clustering)
// the server's default upload limit (ServerSettings.max_upload_bytes); capabilities.max_upload_bytes, when a
// server sends it, wins
const DEFAULT_MAX_UPLOAD_BYTES = 20 * MiB;

// a query the page does not send; the message says why
class Refused extends Error {}

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? JSON.stringify(body.detail).replace(/^"|"$/g, "") : response.statusText);
  return body;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

const current = () => indexes[$("index").value];

async function loadIndexes() {
  const list = await api("/api/indexes");
  const select = $("index");
  select.replaceChildren();
  for (const info of list) {
    indexes[info.name] = info;
    select.append(new Option(`${info.name} (${info.count} images)`, info.name));
  }
  if (!list.length) status("this server has no index", true);
  showCapabilities();
}

function showCapabilities() {
  const info = current();
  if (!info) return;
  const caps = info.capabilities;
  const method = $("method");
  method.replaceChildren();
  for (const name of caps.methods) {
    method.append(new Option(BUILT_IN_METHODS.includes(name) ? name : name + " (learned)", name));
  }
  $("filter-field").hidden = !caps.filters;
  const suggestions = $("filter-values");
  suggestions.replaceChildren();
  for (const [name, counts] of Object.entries(caps.labels || {})) {
    for (const [value, count] of Object.entries(counts)) {
      suggestions.append(new Option(`${count} images`, `${name}=${value}`));
    }
  }
  $("by-class-field").hidden = !caps.scopes.by_class;
  $("by-cluster-field").hidden = !caps.scopes.by_cluster;
}

// --- the options, checked on the page before anything is sent ------------------------------
// [name, value] pairs with the names of ImageIndex.search's options; `where` may repeat (same name: either value)
function searchOptions(notes) {
  const options = [["k", kOption(notes)], ["method", $("method").value]];
  if (!$("filter-field").hidden) {
    for (const term of whereTerms($("filter").value, current().capabilities.labels)) options.push(["where", term]);
  }
  if (!$("by-class-field").hidden && $("by-class").checked) options.push(["by_class", "1"]);
  if (!$("by-cluster-field").hidden && $("by-cluster").checked) options.push(["by_cluster", "1"]);
  return options;
}

// k as a whole number from 1 to MAX_K; above MAX_K it is lowered (and the field says so), anything else refused
function kOption(notes) {
  const field = $("k");
  const text = field.value.trim();
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new Refused(`k must be a whole number from 1 to ${MAX_K} (it is ${text ? text : "empty"}); nothing searched`);
  }
  if (Number(text) > MAX_K) {
    field.value = String(MAX_K);
    notes.push(`k lowered from ${text} to ${MAX_K}, the most one search returns`);
    return String(MAX_K);
  }
  return String(Number(text));
}

// NAME=VALUE terms, comma-separated, matched without regard to case against the index's own label names and
// values (a value spelled in several cases matches them all); an unknown one is refused with what there is
function whereTerms(text, labels) {
  const terms = [];
  for (const term of text.split(",").map((t) => t.trim()).filter(Boolean)) {
    const equals = term.indexOf("=");
    const name = term.slice(0, equals).trim();
    const value = term.slice(equals + 1).trim();
    if (equals < 0 || !name || !value) {
      throw new Refused(`a filter looks like NAME=VALUE (e.g. label=dress), not "${term}"`);
    }
    if (!labels) { terms.push(`${name}=${value}`); continue; } // the server did not list its labels: as typed
    const known = labels[name] ? name : Object.keys(labels).find((n) => n.toLowerCase() === name.toLowerCase());
    if (!known) throw new Refused(unknownLabel(name, labels));
    const values = Object.keys(labels[known]).filter((v) => v.toLowerCase() === value.toLowerCase());
    if (!values.length) throw new Refused(unknownValue(known, value, labels[known]));
    terms.push(...values.map((v) => `${known}=${v}`));
  }
  return terms;
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

function uploadLimit() {
  return current()?.capabilities?.max_upload_bytes ?? DEFAULT_MAX_UPLOAD_BYTES;
}

// a file the server would refuse is not uploaded at all; the message gives its size, not where reading stopped
function tooLarge(file) {
  const limit = uploadLimit();
  if (file.size <= limit) return null;
  return `${file.name}: ${(file.size / MiB).toFixed(1)} MB; the limit is ${+(limit / MiB).toFixed(1)} MB`;
}

// a refusal replaces whatever was on screen; an answer still on its way is not shown over it
function refuse(message) {
  latestSearch++;
  clearResults();
  status(message, true);
}

// --- searching --------------------------------------------------------------------------------
// `byControl`: a control changed (the same search on screen is not run again, and focus stays on the control)
async function search(query, { byControl = false } = {}) {
  lastQuery = query;
  const notes = [];
  let options;
  try {
    options = searchOptions(notes);
  } catch (error) {
    if (!(error instanceof Refused)) throw error;
    refuse(error.message); // lastQuery stays: mending the control searches again
    return;
  }
  const key = JSON.stringify([$("index").value, query.kind, query.id, query.serial, options]);
  if (byControl && key === shownKey) return; // on screen already, or on its way
  shownKey = key;
  const mine = ++latestSearch;
  const base = `/api/indexes/${encodeURIComponent($("index").value)}/search`;
  status("searching…");
  try {
    let result;
    if (query.kind === "upload") {
      const form = new FormData();
      form.append("image", query.file);
      for (const [name, value] of options) form.append(name, value);
      result = await api(base, { method: "POST", body: form });
    } else {
      const params = new URLSearchParams(options);
      if (query.kind === "random") params.set("random", "true"); else params.set("id", query.id);
      result = await api(`${base}?${params}`);
    }
    if (mine !== latestSearch) return;
    if (query.kind === "random") {
      lastQuery = { kind: "id", id: result.query_id };
      shownKey = JSON.stringify([$("index").value, "id", result.query_id, undefined, options]);
    }
    show(result, query, notes);
    // a new query: the clicked tile is gone, the file dialog closed; keyboard and screen reader go on at the results
    if (!byControl && !$("results-heading").hidden) $("results-heading").focus({ preventScroll: true });
  } catch (error) {
    if (mine !== latestSearch) return;
    clearResults();
    shownKey = key; // the error is the answer on screen: the same control event twice sends it once
    status(error.message, true);
  }
}

// no query panel, no results: nothing on screen may belong to another query than the controls show
function clearResults() {
  const image = $("query-image");
  if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
  image.removeAttribute("src");
  $("query").hidden = true;
  $("results-heading").hidden = true;
  $("results").replaceChildren();
  shownKey = null;
}

function show(result, query, notes) {
  const image = $("query-image");
  if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
  const name = query.kind === "upload" ? query.file.name : result.query.split("/").pop();
  image.src = query.kind === "upload" ? URL.createObjectURL(query.file) : result.query_thumbnail;
  image.alt = "query: " + (query.kind === "upload" ? name : describe(query.labels || {}, result.query));
  $("query").hidden = false;
  $("query-name").textContent = name;
  const predicted = result.predicted_class;
  $("query-class").textContent = predicted
    ? "predicted: " + Object.entries(predicted).map(([c, p]) => `${c} ${(p * 100).toFixed(0)}%`).join(", ") : "";
  $("timings").textContent = Object.entries(result.timings_ms).map(([n, ms]) => `${n} ${ms.toFixed(1)} ms`).join(" · ");
  const grid = $("results");
  grid.replaceChildren();
  for (const match of result.matches) grid.append(resultTile(match));
  $("results-heading").hidden = !result.matches.length;
  const found = result.matches.length ? `${result.matches.length} most similar (${result.method})` : "no matches";
  status([found, ...notes].join(" · "));
  window.scrollTo({ top: 0, behavior: "smooth" });
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

function resultTile(match) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  const described = describe(match.labels, match.path);
  button.type = "button";
  button.title = `${match.path}\nclick to search from this image`;
  button.setAttribute("aria-label", `${described}, score ${match.score.toFixed(3)}: search from this image`);
  button.dataset.id = match.id;
  const image = document.createElement("img");
  image.src = match.thumbnail;
  image.alt = described;
  image.loading = "lazy";
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.setAttribute("aria-hidden", "true"); // the button's name says it
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = match.score.toFixed(3);
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = match.labels.label || Object.values(match.labels)[0] || match.path.split("/").slice(-2, -1)[0] || "";
  caption.append(score, label);
  button.append(image, caption);
  button.addEventListener("click", () => search({ kind: "id", id: match.id, labels: match.labels }));
  item.append(button);
  return item;
}

// --- giving a query: a file chosen (button, Enter or Space on the drop zone), dropped anywhere, or random ---
function wireQueries() {
  const drop = $("drop");
  const file = $("file");
  const chosen = (picked) => {
    if (!picked) return;
    const refused = tooLarge(picked);
    if (!refused) search({ kind: "upload", file: picked, serial: ++uploads });
    else { lastQuery = null; refuse(refused); } // it never became a query
  };
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  file.addEventListener("change", () => { chosen(file.files[0]); file.value = ""; }); // the same file again: a change
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
    drop.classList.add("over");
  });
  window.addEventListener("dragleave", (event) => { if (!event.relatedTarget) drop.classList.remove("over"); });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    drop.classList.remove("over");
    chosen(event.dataTransfer.files[0]);
  });
  $("random").addEventListener("click", () => search({ kind: "random" }));
}

function wireControls() {
  const rerun = () => lastQuery && search(lastQuery, { byControl: true });
  $("index").addEventListener("change", () => { showCapabilities(); lastQuery = null; clearResults(); status(""); });
  for (const id of ["method", "k", "filter", "by-class", "by-cluster"]) $(id).addEventListener("change", rerun);
  // Enter in a text field applies it at once (also when the value did not change since it was last left)
  $("controls").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.tagName === "INPUT") rerun(); // a change may follow: sent once
  });
  $("controls").addEventListener("submit", (event) => { event.preventDefault(); rerun(); });
}

wireQueries();
wireControls();
loadIndexes().catch((error) => status(error.message, true));
