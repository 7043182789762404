// keyreid-stream identity browser, common part: DOM helpers, formatting, the API client (bearer token kept in
// sessionStorage), thumbnails fetched as blobs, and the messages shown for errors. Plain ES module, no build step.
// Every text from the API is inserted as text (textContent), never as HTML.

export const API = new URL("../", window.location.href); // the page is served at <api>/browser/
export const TOKEN_KEY = "keyreid-stream.api-token";
const SVG = "http://www.w3.org/2000/svg";

export const $ = (id) => document.getElementById(id);
export const thumbnails = new Map(); // tracklet id -> Promise of an object URL (null when it has none)

// ------------------------------------------------------------------------------------------ helpers

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== undefined && child !== null) node.append(child);
  }
  return node;
}

export function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// ------------------------------------------------------------------------------------------ times and track ids
// The clock rule of keyreid_stream/clock.py: a time below MEDIA_TIME_LIMIT is media time (seconds from the start
// of a recording read faster than real time), anything else unix seconds shown in UTC. Every time says which.

export const MEDIA_TIME_LIMIT = 1e9; // keyreid_stream.clock.MEDIA_TIME_LIMIT
export const TRACK_ID_SPAN = 1e6; // keyreid_stream.contracts.TRACK_ID_SPAN
export const isMedia = (seconds) => seconds < MEDIA_TIME_LIMIT;

function mediaText(seconds, decimals) {
  const scale = 10 ** decimals;
  const total = Math.floor(Math.abs(seconds) * scale + 0.5);
  const hours = Math.floor(total / (3600 * scale));
  const minutes = Math.floor((total % (3600 * scale)) / (60 * scale));
  const rest = total % (60 * scale);
  const two = (n) => String(n).padStart(2, "0");
  const fraction = decimals ? `.${String(rest % scale).padStart(decimals, "0")}` : "";
  return `${seconds < 0 ? "-" : ""}${hours}:${two(minutes)}:${two(Math.floor(rest / scale))}${fraction}`;
}

// "0:01:04.6 media" or "2026-12-04 20:33:46 UTC"; short: "0:01:04" or "20:33:46" (where the clock is stated)
export function when(seconds, short = false) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "-";
  if (isMedia(seconds)) return short ? mediaText(seconds, 0) : `${mediaText(seconds, 1)} media`;
  const iso = new Date(Math.floor(seconds) * 1000).toISOString();
  return short ? iso.slice(11, 19) : `${iso.slice(0, 19).replace("T", " ")} UTC`;
}

const CLOCK_NOTES = {
  media: "times are media time (h:mm:ss from the start of the video: files read faster than real time)",
  wall: "times are UTC wall clock (live cameras, files read in real time)",
  both: "times are media time (h:mm:ss from the start of the video, files read faster than real time) or UTC "
    + "wall clock (live cameras, files read in real time), as each says",
};

// keyreid_stream.clock.clock_note: the sentence that says which clock these times are on
export function clockNote(times) {
  const known = times.filter((t) => t !== null && t !== undefined && Number.isFinite(t));
  const media = known.some(isMedia);
  const wall = known.some((t) => !isMedia(t));
  if (media && wall) return CLOCK_NOTES.both;
  return media ? CLOCK_NOTES.media : wall ? CLOCK_NOTES.wall : "";
}

// A time typed by the user: "2026-12-04 20:30[:15]" (UTC), "0:01:20" or "1:20" (media time), or seconds
export function parseTime(text) {
  const value = String(text).trim().replace(/\s*(UTC|Z|media)$/i, "");
  if (value === "") return null;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  let match = value.match(/^(\d+):(\d{1,2})(?::(\d{1,2}(?:\.\d+)?))?$/);
  if (match) {
    return match[3] === undefined ? Number(match[1]) * 60 + Number(match[2])
      : Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
  }
  match = value.match(/^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?$/);
  const parsed = match ? Date.parse(`${match[1]}T${match[2] || "00:00"}Z`) : NaN;
  if (!Number.isNaN(parsed)) return parsed / 1000;
  throw new Error(`"${text}" is not a time: write 2026-12-04 20:30 (UTC), 0:01:20 (media time) or seconds`);
}

// "#12" and "cam1 #12": the worker's own count in the track id (the full id goes in a title)
export const shortTrack = (trackId) => `#${Number(trackId) % TRACK_ID_SPAN}`;
export const trackLabel = (camera, trackId) => `${camera} ${shortTrack(trackId)}`;

export function duration(seconds) {
  if (!(seconds >= 0)) return "";
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;
export const score = (value) => (value === null || value === undefined ? "-" : Number(value).toFixed(3));
export const short = (tid) => (tid ? `\u2026${tid.slice(-8)}` : "-"); // the full id is in the element's title
export const identityHash = (gid) => `#/identity/${encodeURIComponent(gid)}`;

// ------------------------------------------------------------------------------------------ the API

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export const token = () => window.sessionStorage.getItem(TOKEN_KEY);

export async function request(path, params, as = "json") {
  const url = new URL(path, API);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: as === "json" ? "application/json" : "image/*" };
  const secret = token();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let response;
  try {
    response = await fetch(url, { headers, credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, "network", `Cannot reach the matcher's API at ${API.href} (${error.message}).`);
  }
  if (!response.ok) {
    let code = "http_error";
    let detail = response.statusText || "no details";
    try {
      const body = await response.json();
      code = body.error || code;
      detail = body.detail || detail;
    } catch (_) { /* not JSON: keep the status text */ }
    throw new ApiError(response.status, code, detail);
  }
  try {
    return as === "json" ? await response.json() : await response.blob();
  } catch (error) {
    throw new ApiError(0, "network", `The matcher's answer to ${url.pathname} was cut off (${error.message}).`);
  }
}

export function thumbnail(tid) {
  if (!thumbnails.has(tid)) {
    const url = request(`tracklets/${encodeURIComponent(tid)}/thumbnail`, null, "blob")
      .then((blob) => URL.createObjectURL(blob))
      .catch((error) => {
        if (error.status !== 404) thumbnails.delete(tid); // try again next time: a 401 or an outage may pass
        if (error.status === 401) showError(error);
        return null;
      });
    thumbnails.set(tid, url);
  }
  return thumbnails.get(tid);
}

// ------------------------------------------------------------------------------------------ messages

export function message(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

export function askToken(text) {
  $("token-label").textContent = text;
  $("token-form").hidden = false;
  $("token-input").focus();
}

export function showError(error) {
  if (!(error instanceof ApiError)) {
    console.error(error); // a bug of this page
    message(`Unexpected error in the page: ${error && error.message ? error.message : error}`);
    return;
  }
  if (error.status === 401) {
    const refused = token() !== null;
    window.sessionStorage.removeItem(TOKEN_KEY);
    updateTokenButton();
    message(refused ? "The matcher refused the token (401). Enter the right one."
      : "The matcher needs an API token (401).");
    askToken(refused ? "The token was refused; enter the right one." : "This matcher needs an API token.");
    return;
  }
  if (error.status === 503) {
    message(`The matcher cannot answer right now (503: ${error.detail}). Try again in a moment.`);
  } else if (error.status === 0) {
    message(`${error.detail} Is the matcher running?`);
  } else if (error.status === 404) {
    message(`Not found (404): ${error.detail}`);
  } else {
    message(`The matcher answered ${error.status} (${error.code}): ${error.detail}`);
  }
}

export function updateTokenButton() {
  $("forget-token").hidden = token() === null;
}

export async function checkHealth() {
  const status = $("matcher-status");
  try {
    const response = await fetch(new URL("health", API), { headers: { Accept: "application/json" } });
    const report = await response.json();
    const problems = (report.problems || []).join("; ");
    status.textContent = report.status === "ok" ? "matcher ok" : `matcher degraded: ${problems}`;
    status.className = report.status === "ok" ? "ok" : "degraded";
  } catch (_) {
    status.textContent = "matcher unreachable";
    status.className = "degraded";
  }
}
