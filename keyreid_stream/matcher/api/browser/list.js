// keyreid-stream identity browser: the identity list, a dense grid of cards a page at a time, with the total
// count, filters (camera, seen on several cameras, a time range) kept in the URL's hash ("#/?camera=cam1&multi=1
// &since=..&until=..&last=3600&page=2&per=48"), and refresh in place (the filters are never redrawn).
import {
  $, clockNote, duration, el, identityHash, parseTime, plural, request, when,
} from "./common.js";
import { thumb } from "./search.js";

export const PAGE_SIZES = [24, 48, 96, 200];
const DEFAULT_PER = 48;
const MAX_CARD_THUMBS = 3; // per card; the identity's page shows them all
const RANGES = [["", "any time"], ["900", "last 15 minutes"], ["3600", "last hour"], ["86400", "last 24 hours"],
  ["custom", "from \u2026 to \u2026"]];

// ------------------------------------------------------------------------------------------ the query

function intParam(params, name, fallback, low, high) {
  const value = Number.parseInt(params.get(name) || "", 10);
  return Number.isInteger(value) && value >= low && value <= high ? value : fallback;
}

function numberParam(params, name) {
  const text = params.get(name);
  const value = text === null || text === "" ? NaN : Number(text);
  return Number.isFinite(value) ? value : null;
}

// The list's state from the hash's query: filters, time range (a sliding "last" or fixed since/until), page
export function listState(params) {
  const last = intParam(params, "last", null, 1, 10 * 365 * 86400);
  return {
    camera: params.get("camera") || "",
    multi: params.get("multi") === "1",
    last,
    since: last ? null : numberParam(params, "since"),
    until: last ? null : numberParam(params, "until"),
    page: intParam(params, "page", 1, 1, 1e6),
    per: intParam(params, "per", DEFAULT_PER, 1, 200),
    refresh: params.get("refresh"), // browser.js reads it: kept in the links
  };
}

function hashOf(state) {
  const query = new URLSearchParams();
  if (state.camera) query.set("camera", state.camera);
  if (state.multi) query.set("multi", "1");
  if (state.last) query.set("last", String(state.last));
  if (!state.last && state.since !== null) query.set("since", String(state.since));
  if (!state.last && state.until !== null) query.set("until", String(state.until));
  if (state.page > 1) query.set("page", String(state.page));
  if (state.per !== DEFAULT_PER) query.set("per", String(state.per));
  if (state.refresh) query.set("refresh", state.refresh);
  const text = query.toString();
  return `#/${text ? `?${text}` : ""}`;
}

// One page of identities and the count of all of them (the sliding range is taken from now, at every refresh)
export async function fetchList(state) {
  const since = state.last ? Date.now() / 1000 - state.last : state.since;
  const filters = { camera: state.camera, min_cameras: state.multi ? 2 : null, since, until: state.until };
  const [count, rows] = await Promise.all([
    request("identities/count", filters),
    request("identities", { ...filters, limit: state.per, offset: (state.page - 1) * state.per }),
  ]);
  return { count, rows };
}

// ------------------------------------------------------------------------------------------ the page

export async function renderList(params, gen, current) {
  const state = listState(params);
  const [cameras, data] = await Promise.all([request("cameras"), fetchList(state)]);
  if (gen !== current()) return null;
  const view = $("view");
  view.replaceChildren();
  view.dataset.view = "list";
  view.append(el("div", { class: "list-head" },
    el("h1", { text: "Identities" }), el("span", { id: "identity-count", class: "count" })),
  filters(state, cameras), el("p", { id: "clock-note", class: "muted" }),
  pager("pager-top"), el("ul", { id: "identity-list", class: "grid" }), pager("pager-bottom"));
  updateList(state, data);
  return { state, data };
}

function filters(state, cameras) {
  const select = el("select", { id: "camera-filter" }, el("option", { value: "", text: "all cameras" }));
  for (const item of cameras) {
    select.append(el("option", { value: item.camera_id, text: `${item.camera_id} (${item.tracklets})` }));
  }
  select.value = state.camera;
  const multi = el("input", { id: "multi-camera", type: "checkbox", checked: state.multi });
  const range = el("select", { id: "time-range" }, ...RANGES.map(([value, text]) => el("option", { value, text })));
  const custom = state.since !== null || state.until !== null;
  if (state.last && !RANGES.some(([value]) => value === String(state.last))) {
    range.append(el("option", { value: String(state.last), text: `last ${duration(state.last)}` }));
  }
  range.value = state.last ? String(state.last) : custom ? "custom" : "";
  const input = (id, value, placeholder) => el("input", {
    id, type: "text", size: 22, value: value === null ? "" : when(value), placeholder, spellcheck: "false" });
  const from = input("since", state.since, "2026-12-04 20:30 or 0:01:20");
  const to = input("until", state.until, "(now)");
  const apply = el("button", { id: "apply-range", type: "submit", text: "Apply" });
  const per = el("select", { id: "page-size" },
    ...PAGE_SIZES.map((n) => el("option", { value: String(n), text: String(n) })));
  if (!PAGE_SIZES.includes(state.per)) {
    per.append(el("option", { value: String(state.per), text: String(state.per) }));
  }
  per.value = String(state.per);
  const customBox = el("span", { id: "custom-range", hidden: range.value !== "custom" },
    el("label", {}, "from ", from), el("label", {}, " to ", to), " ", apply);
  const error = el("span", { id: "range-error", class: "error", role: "alert" });

  const go = (changes) => {
    window.location.hash = hashOf({ ...state, page: 1, ...changes });
  };
  select.addEventListener("change", () => go({ camera: select.value }));
  multi.addEventListener("change", () => go({ multi: multi.checked }));
  per.addEventListener("change", () => go({ per: Number(per.value) }));
  range.addEventListener("change", () => {
    if (range.value === "custom") {
      customBox.hidden = false;
      from.focus();
      return;
    }
    go({ last: range.value ? Number(range.value) : null, since: null, until: null });
  });
  const form = el("form", { id: "filters" },
    el("label", {}, "Camera ", select),
    el("label", {}, multi, " seen on several cameras"),
    el("label", {}, "Time ", range), customBox, error,
    el("label", { class: "per-page" }, "per page ", per));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      const since = parseTime(from.value);
      const until = parseTime(to.value);
      if (since !== null && until !== null && since > until) {
        throw new Error("\u201cfrom\u201d is after \u201cto\u201d");
      }
      error.textContent = "";
      go({ last: null, since, until });
    } catch (problem) {
      error.textContent = problem.message;
    }
  });
  return form;
}

function pager(id) {
  return el("nav", { id, class: "pager", "aria-label": "pages" },
    el("a", { class: "first", text: "\u00ab newest" }), el("a", { class: "prev", text: "\u2039 newer" }),
    el("span", { class: "where" }),
    el("a", { class: "next", text: "older \u203a" }), el("a", { class: "last", text: "oldest \u00bb" }));
}

// Fill the count, the pagers and the grid from ``data`` (also on every refresh: the filters stay as they are)
export function updateList(state, { count, rows }) {
  const pages = Math.max(1, Math.ceil(count.total / state.per));
  const more = count.exact ? "" : " or more";
  $("identity-count").textContent = `${count.total} ${count.total === 1 ? "identity" : "identities"}${more}`;
  $("identity-count").dataset.total = String(count.total);
  const first = (state.page - 1) * state.per;
  for (const nav of document.querySelectorAll("nav.pager")) {
    const link = (selector, page, enabled) => {
      const a = nav.querySelector(selector);
      if (enabled) a.setAttribute("href", hashOf({ ...state, page }));
      else a.removeAttribute("href");
      a.classList.toggle("disabled", !enabled);
    };
    link(".first", 1, state.page > 1);
    link(".prev", state.page - 1, state.page > 1);
    link(".next", state.page + 1, state.page < pages || (!count.exact && rows.length === state.per));
    link(".last", pages, state.page < pages && count.exact);
    nav.querySelector(".where").textContent = rows.length
      ? `page ${state.page} of ${pages}${more}: ${first + 1}\u2013${first + rows.length} of ${count.total}${more}`
      : `page ${state.page} of ${pages}${more}: none here`;
    nav.dataset.page = String(state.page);
    nav.dataset.pages = String(pages);
  }
  $("clock-note").textContent = capitalised(clockNote(rows.flatMap((r) => [r.first_seen, r.last_seen])));
  const list = $("identity-list");
  if (rows.length === 0) {
    list.replaceChildren(el("li", { class: "empty", id: "no-identities",
      text: "No identity matches these filters." }));
    return;
  }
  list.replaceChildren(...rows.map(card));
}

const capitalised = (text) => (text ? `${text[0].toUpperCase()}${text.slice(1)}.` : "");

function card(row) {
  const cross = row.cameras.length > 1;
  const thumbs = el("div", { class: `thumbs${row.cameras.length > 2 ? " many" : ""}` });
  for (const camera of row.cameras.slice(0, MAX_CARD_THUMBS)) {
    const tid = row.thumbnails[camera];
    thumbs.append(tid ? thumb(tid, camera, camera, { label: `${row.identity_id} on ${camera}` })
      : el("figure", { class: "thumb missing", "data-camera": camera, title: `no thumbnail from ${camera}` },
        el("div", { class: "no-image", text: "no image" }), el("figcaption", { text: camera })));
  }
  if (row.cameras.length > MAX_CARD_THUMBS) {
    thumbs.append(el("span", { class: "more-cameras", text: `+${row.cameras.length - MAX_CARD_THUMBS}` }));
  }
  const first = row.first_seen === null ? row.last_seen : row.first_seen;
  const range = `seen ${when(first)} to ${when(row.last_seen)}, on ${row.cameras.join(", ")}`
    + `${row.cameras_complete ? "" : " (from its recent tracklets)"}`;
  const cameras = `${plural(row.cameras.length, "camera")}${row.cameras_complete ? "" : " or more"}`;
  return el("li", { class: `identity card${cross ? " cross-camera" : ""}`, "data-identity": row.identity_id },
    el("div", { class: "card-head" },
      el("a", { class: "identity-link", href: identityHash(row.identity_id), text: row.identity_id }),
      cross ? el("span", { class: "badge", text: `${row.cameras.length} cams` }) : null),
    thumbs,
    el("div", { class: "time-span", title: range, text: when(first) }),
    el("div", { class: "counts", title: `${plural(row.num_tracklets, "tracklet")} on ${cameras}`,
      text: `${plural(row.num_tracklets, "tracklet")} \u00b7 ${duration(row.last_seen - first)}` }));
}
