// keyreid-stream identity browser: thumbnails that search for look-alikes, the look-alikes panel, and the
// association thresholds (GET /stats) shown beside every similarity score.
import { $, el, identityHash, plural, request, score, short, showError, thumbnail } from "./common.js";

const SEARCH_K = 8;

let searchGeneration = 0;
let thresholds = null; // {link, merge, split} from GET /stats, null until known (or when the matcher has none)

export async function loadThresholds() {
  try {
    const stats = await request("stats");
    thresholds = stats.thresholds || null;
  } catch (error) {
    thresholds = null; // the scores are still shown, without their threshold
  }
  return thresholds;
}

// "link threshold 0.600": what a look-alike score must reach for association to link it
export const thresholdText = () => (thresholds ? `link threshold ${score(thresholds.link)}` : "");

export function scoreText(value) {
  if (!thresholds || value === null || value === undefined) return score(value);
  return `${score(value)} ${value >= thresholds.link ? "\u2265" : "<"} ${score(thresholds.link)}`;
}

// ------------------------------------------------------------------------------------------ thumbnails

export function thumb(tid, camera, caption, { hasImage = true, label = `${short(tid)} on ${camera}`, title } = {}) {
  const figure = el("figure", {
    class: "thumb", "data-tracklet": tid, "data-camera": camera, tabindex: 0, role: "button",
    title: `${title || `tracklet ${tid} on ${camera}`}: click to find look-alikes`,
  });
  const placeholder = el("div", { class: "no-image", text: hasImage ? "loading" : "no image" });
  figure.append(placeholder, el("figcaption", { text: caption }));
  if (hasImage) fillImage(placeholder, tid, `tracklet ${tid} on ${camera}`);
  const search = () => searchSimilar(tid, label);
  figure.addEventListener("click", search);
  figure.addEventListener("keydown", (event) => { if (event.key === "Enter") search(); });
  return figure;
}

export function fillImage(placeholder, tid, alt) {
  thumbnail(tid).then((url) => {
    if (!placeholder.parentNode) return;
    if (url === null) {
      placeholder.textContent = "no image";
      return;
    }
    placeholder.replaceWith(el("img", { src: url, alt, "data-tracklet": tid }));
  });
}

// ------------------------------------------------------------------------------------------ look-alikes

export async function searchSimilar(tid, label = short(tid)) {
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
    [hits] = await Promise.all([request(`tracklets/${encodeURIComponent(tid)}/similar`, { k: SEARCH_K }),
      thresholds ? null : loadThresholds()]);
  } catch (error) {
    if (gen !== searchGeneration) return;
    results.replaceChildren(el("li", { class: "muted", text: "the search failed" }));
    showError(error);
    return;
  }
  if (gen !== searchGeneration) return;
  $("search-threshold").textContent = thresholds
    ? `Scores are cosine similarities; association links a tracklet to an identity at ${score(thresholds.link)} `
      + `or more (${thresholdText()}), merges identities at ${score(thresholds.merge)}.`
    : "Scores are cosine similarities (this matcher does not say its link threshold).";
  const current = $("identity-title");
  const shown = current ? current.dataset.identity : null;
  results.replaceChildren();
  if (hits.length === 0) results.append(el("li", { class: "empty", text: "No identity found." }));
  for (const hit of hits) {
    const open = () => {
      hidePanel();
      window.location.hash = identityHash(hit.identity_id);
    };
    const above = thresholds ? hit.score >= thresholds.link : null;
    const picture = el("div", { class: "no-image", text: "loading" });
    const item = el("li", {
      class: `search-hit${hit.identity_id === shown ? " same-identity" : ""}`
        + `${above === null ? "" : above ? " above-threshold" : " below-threshold"}`,
      tabindex: 0, role: "link", "data-identity": hit.identity_id, "data-tracklet": hit.best_tracklet,
      "data-score": hit.score, title: `open identity ${hit.identity_id}`,
    }, picture, el("div", { class: "hit-text" },
      el("span", { class: "hit-identity", text: hit.identity_id }),
      el("span", { class: "score", text: `score ${scoreText(hit.score)}` }),
      el("span", { class: "camera", text: hit.best_camera }),
      el("span", { class: "hits", text: `${plural(hit.tracklets_hit, "near tracklet")}` })));
    item.addEventListener("click", open);
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
    results.append(item);
    fillImage(picture, hit.best_tracklet, `best tracklet of ${hit.identity_id}`);
  }
  panel.dataset.ready = "true";
}

export function hidePanel() {
  searchGeneration += 1;
  $("search-panel").hidden = true;
  $("search-results").replaceChildren();
}
