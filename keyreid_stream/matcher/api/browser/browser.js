// keyreid-stream identity browser: a single page over the matcher's query API (plain JavaScript modules, no build
// step, no external resources). Routes live in the URL's hash: "#/" (the identity list, see list.js), and
// "#/identity/g42". The data on screen refreshes by itself every few seconds ("live", "&refresh=S" in the hash)
// and is redrawn only when it changed. Helpers and the API client are in common.js, look-alikes in search.js.
import {
  $, TOKEN_KEY, checkHealth, clockNote, duration, el, message, plural, request, short, shortTrack, showError, svg,
  thumbnails, trackLabel, updateTokenButton, when,
} from "./common.js";
import { fetchList, renderList, updateList } from "./list.js";
import { hidePanel, loadThresholds, scoreText, searchSimilar, thresholdText, thumb } from "./search.js";

const REFRESH_S = 10;

let generation = 0; // increases with every route change: late answers of an older view are dropped
let shown = null; // what the current view shows: {kind, key, state, refresh()} for the live refresh
let refreshing = false;
let refreshFailed = false; // the last refresh showed an error: the next good one clears it

// ------------------------------------------------------------------------------------------ one identity

async function renderIdentity(gid, gen) {
  const data = await request(`identities/${encodeURIComponent(gid)}`);
  if (gen !== generation) return null;
  drawIdentity(data);
  return data;
}

function drawIdentity(data) {
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
  const names = new Map(data.tracklets.map((t) => [t.tracklet_id, trackLabel(t.camera_id, t.track_id)]));
  const name = (tid) => names.get(tid) || short(tid);
  const note = clockNote([data.first_seen]);
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
    el("p", { id: "clock-note", class: "muted", text: note
      ? `The ${note}; decisions are on the matcher's wall clock (UTC).` : "" }),
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
      const label = trackLabel(camera, t.track_id);
      const caption = `${shortTrack(t.track_id)} \u00b7 ${when(t.start_time, true)}`;
      thumbs.append(thumb(t.tracklet_id, camera, caption,
        { hasImage: t.has_thumbnail, label, title: `${label} (track ${t.track_id}), ${when(t.start_time)}` }));
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
      bar.append(svg("title", {}, `${trackLabel(camera, t.track_id)}: ${when(t.start_time)} \u2013 `
        + `${when(t.end_time)}, ${t.decision_kind || "not decided"} ${scoreText(t.decision_score)}`));
      bar.addEventListener("click", () => searchSimilar(t.tracklet_id, trackLabel(camera, t.track_id)));
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

function scoreHeader() {
  const threshold = thresholdText();
  return threshold ? `score (${threshold})` : "score";
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
      el("td", { class: "score", text: scoreText(entry.score) })));
  }
  return el("table", { id: "decision-log" },
    el("thead", {}, el("tr", {}, ...["decided (matcher's clock)", "kind", "tracklet", "why", scoreHeader()]
      .map((text) => el("th", { text })))),
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
      el("td", { title: `track ${t.track_id}`, text: shortTrack(t.track_id) }),
      el("td", { text: `${when(t.start_time)} (${duration(t.end_time - t.start_time)})` }),
      el("td", { text: t.decision_kind || "not decided" }),
      el("td", { class: "score", text: scoreText(t.decision_score) }),
      el("td", { title: t.matched_tracklet || "", text: t.matched_tracklet ? name(t.matched_tracklet) : "-" }),
      el("td", {}, details)));
  }
  return el("table", { id: "tracklets" },
    el("thead", {}, el("tr", {}, ...["tracklet", "camera", "track", "start", "decision", scoreHeader(), "matched", ""]
      .map((text) => el("th", { text })))),
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
      const text = `${c.identity} ${scoreText(c.score)} via ${short(c.tracklet_id)}`;
      list.append(el("li", { class: "candidate", text }));
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

// ------------------------------------------------------------------------------------------ live refresh

function refreshSeconds() {
  const query = (window.location.hash.split("?")[1] || "");
  const value = Number(new URLSearchParams(query).get("refresh"));
  return Number.isFinite(value) && value >= 1 && value <= 3600 ? value : REFRESH_S;
}

function markUpdated() {
  const now = Date.now();
  const stamp = $("updated");
  stamp.textContent = `updated ${when(now / 1000, true)} UTC`;
  stamp.title = `data read from the matcher at ${when(now / 1000)}; `
    + `refreshed every ${refreshSeconds()} s while live`;
  stamp.dataset.updated = String(now);
}

// Read the shown view's data again; redraw only what changed, never the filters, keeping the scroll position
async function refresh() {
  if (refreshing || shown === null || !$("live").checked || document.hidden) return;
  if ($("view").dataset.ready !== "true") return;
  const gen = generation;
  const current = shown;
  refreshing = true;
  try {
    const data = current.kind === "list" ? await fetchList(current.state)
      : await request(`identities/${encodeURIComponent(current.key)}`);
    if (gen !== generation) return;
    const text = JSON.stringify(data);
    if (text !== current.text) {
      const busy = current.kind === "identity" && document.querySelector("details.tracklet-decision[open]");
      if (!busy) {
        const { scrollX, scrollY } = window;
        if (current.kind === "list") updateList(current.state, data);
        else drawIdentity(data);
        window.scrollTo(scrollX, scrollY);
        current.text = text;
      }
    }
    markUpdated();
    if (refreshFailed) message("");
    refreshFailed = false;
  } catch (error) {
    if (gen === generation) {
      refreshFailed = true;
      showError(error);
    }
  } finally {
    refreshing = false;
  }
}

let timer = null;

function schedule() {
  if (timer !== null) window.clearInterval(timer);
  timer = window.setInterval(refresh, refreshSeconds() * 1000);
}

// ------------------------------------------------------------------------------------------ routing

function route() {
  const gen = ++generation;
  shown = null;
  hidePanel();
  message("");
  schedule();
  const view = $("view");
  view.dataset.ready = "false";
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const match = path.match(/^\/identity\/([^/]+)$/);
  const job = match
    ? loadThresholds().then(() => renderIdentity(decodeURIComponent(match[1]), gen))
      .then((data) => data && { kind: "identity", key: data.requested_id, text: JSON.stringify(data) })
    : renderList(new URLSearchParams(query || ""), gen, () => generation)
      .then((result) => result && { kind: "list", state: result.state, text: JSON.stringify(result.data) });
  job.then((result) => {
    if (gen !== generation || result === null) return;
    shown = result;
    markUpdated();
    view.dataset.ready = "true";
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
  $("live").addEventListener("change", () => { if ($("live").checked) refresh(); });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  updateTokenButton();
  checkHealth();
  window.setInterval(checkHealth, 30000);
  route();
}

init();
