// Cluster maps and contact sheets that other lookalike commands wrote into the index folder.
"use strict";

const $ = (id) => document.getElementById(id);

async function loadIndexes() {
  const list = await (await fetch("/api/indexes")).json();
  for (const info of list) $("index").append(new Option(info.name, info.name));
  $("index").addEventListener("change", showArtifacts);
  showArtifacts();
}

async function showArtifacts() {
  const name = $("index").value;
  const response = await fetch(`/api/indexes/${encodeURIComponent(name)}/artifacts`);
  const artifacts = await response.json();
  const list = $("artifacts");
  list.replaceChildren();
  $("status").textContent = artifacts.length ? "" :
    "no cluster map or contact sheet in this index yet (they appear when INDEX/clusters/ or INDEX/map/ holds them)";
  for (const artifact of artifacts) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = artifact.url;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = `${artifact.folder}/${artifact.name}`;
    item.append(link);
    if (artifact.type.startsWith("image/")) {
      const image = document.createElement("img");
      image.src = artifact.url;
      image.alt = artifact.name;
      item.append(document.createElement("br"), image);
    }
    list.append(item);
  }
}

loadIndexes().catch((error) => { $("status").textContent = error.message; });
