// keyreid-stream identity browser: a single page over the matcher's query API (plain JavaScript modules, no build
// step, no external resources). Routes live in the URL's hash: "#/" (the identity list, with
// "?camera=..&multi=1"), "#/identity/g42". Common helpers and the API client are in common.js.
import {
  $, TOKEN_KEY, checkHealth, duration, el, identityHash, message, plural, request, score, short, showError, svg,
  thumbnail, thumbnails, updateTokenButton, when,
} from "./common.js";

const LIST_LIMIT = 100;
const SEARCH_K = 8;

let generation = 0; // increases with every route change: late answers of an older view are dropped
let searchGeneration = 0;

// ------------------------------------------------------------------------------------------ thumbnails

function thumb(tid, camera, caption, hasImage = true, label = `${short(tid)} on ${camera}`) {
  const figure = el("figure", {
    class: "thumb", "data-tracklet": tid, "data-camera": camera, tabindex: 0, role: "button",
    title: `tracklet ${tid} on ${camera}: click to find look-alikes`,
  });
  const placeholder = el("div", { class: "no-image", text: hasImage ? "loading" : "no image" });
  figure.append(placeholder, el("figcaption", { text: caption }));
  if (hasImage) fillImage(placeholder, tid, `tracklet ${tid} on ${camera}`);
  const search = () => searchSimilar(tid, label);
  figure.addEventListener("click", search);
  figure.addEventListener("keydown", (event) => { if (event.key === "Enter") search(); });
  return figure;
}

function fillImage(placeholder, tid, alt) {
  thumbnail(tid).then((url) => {
    if (!placeholder.parentNode) return;
    if (url === null) {
      placeholder.textContent = "no image";
      return;
    }
    placeholder.replaceWith(el("img", { src: url, alt, "data-tracklet": tid }));
  });
}

// ------------------------------------------------------------------------------------------ the list

async function renderList(params, gen) {
  const camera = params.get("camera") || "";
  const multi = params.get("multi") === "1";
  const [cameras, rows] = await Promise.all([
    request("cameras"),
    request("identities", { camera, min_cameras: multi ? 2 : null, limit: LIST_LIMIT }),
  ]);
  if (gen !== generation) return;
  const view = $("view");
  view.replaceChildren();
  view.dataset.view = "list";

  const select = el("select", { id: "camera-filter" }, el("option", { value: "", text: "all cameras" }));
  for (const item of cameras) {
    select.append(el("option", { value: item.camera_id, text: `${item.camera_id} (${item.tracklets})` }));
  }
  select.value = camera;
  const checkbox = el("input", { id: "multi-camera", type: "checkbox", checked: multi });
  const apply = () => {
    const query = new URLSearchParams();
    if (select.value) query.set("camera", select.value);
    if (checkbox.checked) query.set("multi", "1");
    const text = query.toString();
    window.location.hash = `#/${text ? `?${text}` : ""}`;
  };
  select.addEventListener("change", apply);
  checkbox.addEventListener("change", apply);
  view.append(
    el("h1", { text: "Identities" }),
    el("form", { id: "filters", onsubmit: (event) => event.preventDefault() },
      el("label", {}, "Camera ", select),
      el("label", {}, checkbox, " seen on several cameras")),
  );

  if (rows.length === 0) {
    view.append(el("p", { class: "empty", id: "no-identities", text: "No identity matches these filters." }));
    return;
  }
  const list = el("ul", { id: "identity-list" });
  for (const row of rows) list.append(identityItem(row));
  view.append(list);
  if (rows.length === LIST_LIMIT) {
    view.append(el("p", { class: "muted", text: `The ${LIST_LIMIT} most recent identities are shown.` }));
  }
}

function identityItem(row) {
  const span = row.first_seen === null ? when(row.last_seen)
    : `${when(row.first_seen)} \u2013 ${when(row.last_seen)} (${duration(row.last_seen - row.first_seen)})`;
  const cameras = plural(row.cameras.length, "camera");
  const more = row.cameras_complete ? "" : " (or more)";
  const thumbs = el("div", { class: "thumbs" });
  for (const camera of row.cameras) {
    const tid = row.thumbnails[camera];
    thumbs.append(tid ? thumb(tid, camera, camera, true, `${row.identity_id} on ${camera}`)
      : el("figure", { class: "thumb missing", "data-camera": camera },
        el("div", { class: "no-image", text: "no image" }), el("figcaption", { text: camera })));
  }
  return el("li", { class: "identity", "data-identity": row.identity_id },
    el("div", { class: "meta" },
      el("a", { class: "identity-link", href: identityHash(row.identity_id), text: row.identity_id }),
      el("span", { class: "time-span", text: span }),
      el("span", { class: "counts", text: `${plural(row.num_tracklets, "tracklet")}, ${cameras}${more}` })),
    thumbs);
}

// ------------------------------------------------------------------------------------------ one identity

async function renderIdentity(gid, gen) {
  const data = await request(`identities/${encodeURIComponent(gid)}`);
  if (gen !== generation) return;
  const view = $("view");
  view.replaceChildren();
  view.dataset.view = "identity";
  const byCamera = new Map(data.cameras.map((camera) => [camera, []]));
  for (const t of data.tracklets) {
    if (!byCamera.has(t.camera_id)) byCamera.set(t.camera_id, []);
    byCamera.get(t.camera_id).push(t);
  }
  const span = data.first_seen === null ? "-"
    : `${when(data.first_seen)} \u2013 ${when(data.last_seen)} (${duration(data.last_seen - data.first_seen)})`;
  const names = new Map(data.tracklets.map((t) => [t.tracklet_id, `${t.camera_id} track ${t.track_id}`]));
  const name = (tid) => names.get(tid) || short(tid);
  const parts = [
    el("p", {}, el("a", { href: "#/", text: "\u2190 all identities" })),
    el("h1", { id: "identity-title", "data-identity": data.identity_id, text: `Identity ${data.identity_id}` }),
    data.requested_id !== data.identity_id
      ? el("p", { class: "merged", text: `${data.requested_id} was merged into ${data.identity_id} `
        + `(${[...data.merged_from, data.identity_id].join(" \u2192 ")}).` }) : null,
    data.split_from ? el("p", { class: "merged", text: `Split from ${data.split_from}.` }) : null,
    el("p", { class: "summary", text: `${span}; ${plural(data.num_tracklets, "tracklet")} on `
      + `${data.cameras.join(", ") || "no camera"}`
      + (data.truncated ? ` (the ${data.tracklets.length} most recent are shown)` : "") }),
    el("h2", { text: "Per camera" }),
    cameraGroups(byCamera),
    el("h2", { text: "Timeline" }),
    timeline(data, byCamera),
    el("p", { class: "legend" },
      el("span", { class: "swatch kind-new" }), " started the identity ",
      el("span", { class: "swatch kind-continuation" }), " same track continues ",
      el("span", { class: "swatch kind-appearance" }), " joined by appearance (click a bar to search)"),
    el("h2", { text: "Decision log" }),
    decisionLog(data.log, name),
    el("h2", { text: "Tracklets" }),
    trackletTable(data.tracklets, name),
  ];
  view.append(...parts.filter((part) => part !== null));
}

function cameraGroups(byCamera) {
  const box = el("div", { id: "thumbnails" });
  for (const [camera, tracklets] of byCamera) {
    const thumbs = el("div", { class: "thumbs" });
    for (const t of tracklets) {
      thumbs.append(thumb(t.tracklet_id, camera, `track ${t.track_id}, ${when(t.start_time).slice(11, 19)}`,
        t.has_thumbnail, `${camera} track ${t.track_id}`));
    }
    box.append(el("section", { class: "camera-group", "data-camera": camera },
      el("h3", { text: `${camera} (${tracklets.length})` }), thumbs));
  }
  return box;
}

function timeline(data, byCamera) {
  const cameras = [...byCamera.keys()];
  const width = 900;
  const label = 130;
  const rowHeight = 26;
  const top = 8;
  const height = top + cameras.length * rowHeight + 26;
  const start = data.first_seen === null ? 0 : data.first_seen;
  const span = Math.max((data.last_seen === null ? start : data.last_seen) - start, 1e-3);
  const x = (t) => label + ((t - start) / span) * (width - label - 10);
  const chart = svg("svg", {
    id: "timeline", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `timeline of ${data.identity_id}: one row per camera, one bar per tracklet`,
  });
  cameras.forEach((camera, row) => {
    const y = top + row * rowHeight;
    const group = svg("g", { class: "timeline-row", "data-camera": camera });
    group.append(svg("text", { x: 4, y: y + rowHeight / 2 + 4 }, camera));
    group.append(svg("line", { class: "grid", x1: label, x2: width - 10, y1: y + rowHeight - 2, y2: y + rowHeight - 2 }));
    for (const t of byCamera.get(camera)) {
      const left = x(t.start_time);
      const bar = svg("rect", {
        class: `timeline-bar kind-${t.decision_kind || "pending"}`, "data-tracklet": t.tracklet_id,
        x: left.toFixed(1), y: y + 4, height: rowHeight - 10,
        width: Math.max(x(t.end_time) - left, 3).toFixed(1),
      });
      bar.append(svg("title", {}, `${camera} track ${t.track_id}: ${when(t.start_time)} \u2013 `
        + `${when(t.end_time)}, ${t.decision_kind || "not decided"} ${score(t.decision_score)}`));
      bar.addEventListener("click", () => searchSimilar(t.tracklet_id, `${camera} track ${t.track_id}`));
      group.append(bar);
    }
    chart.append(group);
  });
  const axisY = top + cameras.length * rowHeight + 16;
  chart.append(svg("text", { class: "axis", x: label, y: axisY }, when(start)));
  chart.append(svg("text", { class: "axis", x: width - 10, y: axisY, "text-anchor": "end" },
    `+${duration(span)}`));
  return chart;
}

function describe(entry, name) {
  if (entry.kind === "merge") {
    return `identity ${entry.source} merged into ${entry.target} (${plural((entry.tracklets || []).length, "tracklet")})`;
  }
  if (entry.kind === "split") {
    return `${plural((entry.tracklets || []).length, "tracklet")} split from ${entry.source} into ${entry.target}`;
  }
  if (entry.kind === "new") return "started this identity (no match above the threshold)";
  if (entry.kind === "continuation") return `continues the same track as ${name(entry.matched)}`;
  if (entry.kind === "appearance") return `looks like ${name(entry.matched)}`;
  return entry.kind;
}

function decisionLog(log, name) {
  if (log.length === 0) return el("p", { class: "empty", id: "decision-log", text: "No decision recorded." });
  const body = el("tbody");
  for (const entry of log) {
    body.append(el("tr", { class: "log-entry", "data-kind": entry.kind, "data-tracklet": entry.tracklet },
      el("td", { text: when(entry.t) }),
      el("td", { text: entry.kind }),
      el("td", { title: entry.tracklet || "", text: entry.tracklet ? name(entry.tracklet) : "" }),
      el("td", { text: describe(entry, name) }),
      el("td", { class: "score", text: score(entry.score) })));
  }
  return el("table", { id: "decision-log" },
    el("thead", {}, el("tr", {}, ...["decided", "kind", "tracklet", "why", "score"]
      .map((name) => el("th", { text: name })))),
    body);
}

function trackletTable(tracklets, name) {
  const body = el("tbody");
  for (const t of tracklets) {
    const details = el("details", { class: "tracklet-decision" }, el("summary", { text: "candidates" }));
    details.addEventListener("toggle", () => loadDecision(details, t.tracklet_id), { once: true });
    body.append(el("tr", { class: "tracklet-row", "data-tracklet": t.tracklet_id },
      el("td", { class: "tid", title: t.tracklet_id, text: short(t.tracklet_id) }),
      el("td", { text: t.camera_id }),
      el("td", { text: String(t.track_id) }),
      el("td", { text: `${when(t.start_time)} (${duration(t.end_time - t.start_time)})` }),
      el("td", { text: t.decision_kind || "not decided" }),
      el("td", { class: "score", text: score(t.decision_score) }),
      el("td", { title: t.matched_tracklet || "", text: t.matched_tracklet ? name(t.matched_tracklet) : "-" }),
      el("td", {}, details)));
  }
  return el("table", { id: "tracklets" },
    el("thead", {}, el("tr", {}, ...["tracklet", "camera", "track", "start", "decision", "score", "matched", ""]
      .map((name) => el("th", { text: name })))),
    body);
}

async function loadDecision(details, tid) {
  const list = el("ul", {}, el("li", { text: "loading" }));
  details.append(list);
  try {
    const data = await request(`tracklets/${encodeURIComponent(tid)}`);
    const decision = data.decision;
    list.replaceChildren();
    if (!decision) {
      list.append(el("li", { text: "not decided yet" }));
      return;
    }
    for (const c of decision.candidates) {
      list.append(el("li", { class: "candidate", text: `${c.identity} ${score(c.score)} via ${short(c.tracklet_id)}` }));
    }
    for (const r of decision.rejected) {
      list.append(el("li", { class: "rejected", text: `${r.identity} excluded: ${r.reason}` }));
    }
    if (!list.children.length) list.append(el("li", { text: "no other candidate" }));
  } catch (error) {
    list.replaceChildren(el("li", { text: "could not load the decision" }));
    showError(error);
  }
}

// ------------------------------------------------------------------------------------------ look-alikes

async function searchSimilar(tid, label = short(tid)) {
  const gen = ++searchGeneration;
  const panel = $("search-panel");
  const results = $("search-results");
  panel.hidden = false;
  panel.dataset.tracklet = tid;
  panel.dataset.ready = "false";
  $("search-query").textContent = label;
  $("search-query").title = tid;
  results.replaceChildren(el("li", { class: "muted", text: "searching" }));
  panel.scrollIntoView({ block: "nearest" });
  let hits;
  try {
    hits = await request(`tracklets/${encodeURIComponent(tid)}/similar`, { k: SEARCH_K });
  } catch (error) {
    if (gen !== searchGeneration) return;
    results.replaceChildren(el("li", { class: "muted", text: "the search failed" }));
    showError(error);
    return;
  }
  if (gen !== searchGeneration) return;
  const current = $("identity-title");
  const shown = current ? current.dataset.identity : null;
  results.replaceChildren();
  if (hits.length === 0) results.append(el("li", { class: "empty", text: "No identity found." }));
  for (const hit of hits) {
    const open = () => {
      hidePanel();
      window.location.hash = identityHash(hit.identity_id);
    };
    const picture = el("div", { class: "no-image", text: "loading" });
    const item = el("li", {
      class: `search-hit${hit.identity_id === shown ? " same-identity" : ""}`, tabindex: 0, role: "link",
      "data-identity": hit.identity_id, "data-tracklet": hit.best_tracklet, "data-score": hit.score,
      title: `open identity ${hit.identity_id}`,
    }, picture, el("div", { class: "hit-text" },
      el("span", { class: "hit-identity", text: hit.identity_id }),
      el("span", { class: "score", text: `score ${score(hit.score)}` }),
      el("span", { class: "camera", text: hit.best_camera }),
      el("span", { class: "hits", text: `${plural(hit.tracklets_hit, "near tracklet")}` })));
    item.addEventListener("click", open);
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
    results.append(item);
    fillImage(picture, hit.best_tracklet, `best tracklet of ${hit.identity_id}`);
  }
  panel.dataset.ready = "true";
}

function hidePanel() {
  searchGeneration += 1;
  $("search-panel").hidden = true;
  $("search-results").replaceChildren();
}

// ------------------------------------------------------------------------------------------ routing

function route() {
  const gen = ++generation;
  hidePanel();
  message("");
  const view = $("view");
  view.dataset.ready = "false";
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const match = path.match(/^\/identity\/([^/]+)$/);
  const job = match ? renderIdentity(decodeURIComponent(match[1]), gen)
    : renderList(new URLSearchParams(query || ""), gen);
  job.then(() => {
    if (gen === generation) view.dataset.ready = "true";
  }).catch((error) => {
    if (gen !== generation) return;
    view.dataset.ready = "error";
    showError(error);
  });
}

function init() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    window.sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    thumbnails.clear();
    updateTokenButton();
    route();
  });
  $("forget-token").addEventListener("click", () => {
    window.sessionStorage.removeItem(TOKEN_KEY);
    thumbnails.clear();
    updateTokenButton();
    route();
  });
  $("search-close").addEventListener("click", hidePanel);
  window.addEventListener("hashchange", route);
  updateTokenButton();
  checkHealth();
  window.setInterval(checkHealth, 30000);
  route();
}

init();
