// The search page: pick an index, give a query (upload, random, or a result), show the most similar images.
"use strict";

const $ = (id) => document.getElementById(id);
let indexes = {};
let lastQuery = null; // {kind: "upload", file} or {kind: "id", id}; re-run when a control changes
let latestSearch = 0; // only the answer to the latest search is shown (an older one may arrive later)
const BUILT_IN_METHODS = ["cosine", "euclidean"]; // every index has these; the others are learned for it

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
  const info = indexes[$("index").value];
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
    for (const value of Object.keys(counts)) suggestions.append(new Option(`${name}=${value}`));
  }
  $("by-class-field").hidden = !caps.scopes.by_class;
  $("by-cluster-field").hidden = !caps.scopes.by_cluster;
}

// [name, value] pairs with the names of ImageIndex.search's options; `where` may repeat (same name: either value)
function searchOptions() {
  const options = [["k", $("k").value || "12"], ["method", $("method").value]];
  if (!$("filter-field").hidden) {
    for (const term of $("filter").value.split(",")) if (term.trim()) options.push(["where", term.trim()]);
  }
  if (!$("by-class-field").hidden && $("by-class").checked) options.push(["by_class", "1"]);
  if (!$("by-cluster-field").hidden && $("by-cluster").checked) options.push(["by_cluster", "1"]);
  return options;
}

async function search(query) {
  const mine = ++latestSearch;
  lastQuery = query;
  const base = `/api/indexes/${encodeURIComponent($("index").value)}/search`;
  const options = searchOptions();
  status("searching…");
  try {
    let result;
    if (query.kind === "upload") {
      const form = new FormData();
      form.append("image", query.file);
      for (const [key, value] of options) form.append(key, value);
      result = await api(base, { method: "POST", body: form });
    } else {
      const params = new URLSearchParams(options);
      if (query.kind === "random") params.set("random", "true"); else params.set("id", query.id);
      result = await api(`${base}?${params}`);
    }
    if (mine !== latestSearch) return;
    if (query.kind === "random") lastQuery = { kind: "id", id: result.query_id };
    show(result, query);
  } catch (error) {
    if (mine === latestSearch) status(error.message, true);
  }
}

function show(result, query) {
  $("query").hidden = false;
  $("query-image").src = query.kind === "upload" ? URL.createObjectURL(query.file) : result.query_thumbnail;
  $("query-name").textContent = query.kind === "upload" ? query.file.name : result.query.split("/").pop();
  const predicted = result.predicted_class;
  $("query-class").textContent = predicted
    ? "predicted: " + Object.entries(predicted).map(([c, p]) => `${c} ${(p * 100).toFixed(0)}%`).join(", ") : "";
  $("timings").textContent = Object.entries(result.timings_ms).map(([n, ms]) => `${n} ${ms.toFixed(1)} ms`).join(" · ");
  const grid = $("results");
  grid.replaceChildren();
  for (const match of result.matches) grid.append(resultTile(match));
  status(result.matches.length ? `${result.matches.length} most similar (${result.method})` : "no matches");
  window.scrollTo({ top: 0, behavior: "smooth" });
}

function resultTile(match) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.title = `${match.path}\nclick to search from this image`;
  button.dataset.id = match.id;
  const image = document.createElement("img");
  image.src = match.thumbnail;
  image.alt = match.path.split("/").pop();
  image.loading = "lazy";
  const caption = document.createElement("span");
  caption.className = "caption";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = match.score.toFixed(3);
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = match.labels.label || Object.values(match.labels)[0] || match.path.split("/").slice(-2, -1)[0] || "";
  caption.append(score, label);
  button.append(image, caption);
  button.addEventListener("click", () => search({ kind: "id", id: match.id }));
  item.append(button);
  return item;
}

function wireDropZone() {
  const drop = $("drop");
  const chosen = (file) => file && search({ kind: "upload", file });
  $("file").addEventListener("change", (event) => chosen(event.target.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    chosen(event.dataTransfer.files[0]);
  });
  $("random").addEventListener("click", () => search({ kind: "random" }));
}

function wireControls() {
  $("index").addEventListener("change", () => { showCapabilities(); lastQuery = null; $("results").replaceChildren(); });
  for (const id of ["method", "k", "filter", "by-class", "by-cluster"]) { // text fields change on Enter or leaving
    $(id).addEventListener("change", () => lastQuery && search(lastQuery));
  }
  $("controls").addEventListener("submit", (event) => { event.preventDefault(); if (lastQuery) search(lastQuery); });
}

wireDropZone();
wireControls();
loadIndexes().catch((error) => status(error.message, true));
