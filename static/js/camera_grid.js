// The cameras grid: each tile shows the camera's latest still (refreshed every 2 s while the tab
// is visible) and its status badge (from the API every 5 s). Stills cost one small request per
// tile, not a video stream per tile. The same API answer (one request for the whole list) adds a
// tile for a camera added since the page was loaded and drops the tile of one deleted.
//
// The grid outlives server restarts: a tile loads at most one still at a time (a load that hangs
// is abandoned after STILL_TIMEOUT_MS, so an outage cannot pile requests up), nothing stops on a
// failure, and everything is refreshed at once when the tab becomes visible or the browser comes
// back online. When the statuses cannot be had the page says why and since when, instead of
// leaving the last badges up as if they were current: the server cannot be reached (network
// failure), is running but temporarily unavailable (503, e.g. Redis away), or the session is
// gone (401: a link to log in again, as retrying cannot help until then).

import { age, clock } from "./time_format.js";

const STILL_MS = 2000;
const STILL_TIMEOUT_MS = 10_000;
const STATUS_MS = 5000;
// The API's largest page: the grid shows every camera, as the page does.
const CAMERAS_URL = "/api/v1/cameras?limit=500";
const grid = document.getElementById("camera-grid");
const tileTemplate = document.getElementById("camera-tile-template");
const empty = document.getElementById("cameras-empty");
const { organizations } = JSON.parse(document.getElementById("grid-settings").textContent);
let tiles = [...grid.querySelectorAll(".camera-tile")];
const loading = new Map(); // tile -> { image, startedAt } of its still being loaded

let failingSince = null;
let notice = null;

// Why the statuses could not be had: "ok", "unreachable", "unavailable" or "signed-out".
function problemOf(response) {
  if (response.ok) return "ok";
  if (response.status === 401) return "signed-out";
  if (response.status === 503) return "unavailable";
  return "unreachable"; // a proxy's 502/504 and the like: the application does not answer
}

function showProblem(problem) {
  if (problem === "ok") {
    failingSince = null;
  } else if (failingSince === null) {
    failingSince = Date.now();
  }
  grid.dataset.reachable = String(problem === "ok");
  if (!notice) {
    notice = document.createElement("p");
    notice.className = "error camera-grid-notice";
    notice.id = "camera-grid-notice";
    grid.before(notice);
  }
  notice.hidden = problem === "ok";
  if (problem === "ok") {
    notice.replaceChildren();
    return;
  }
  // Nobody here can know a camera's state now: no badge may go on saying "Online".
  for (const badge of grid.querySelectorAll("[data-status]")) {
    badge.className = "badge";
    badge.textContent = "Unknown";
  }
  const since = clock(failingSince);
  const before = ` The stills and statuses below are from before ${since}.`;
  if (problem === "signed-out") {
    const login = document.createElement("a");
    login.href = grid.dataset.loginUrl;
    login.textContent = "log in again";
    notice.replaceChildren("Signed out: ", login, `.${before}`);
  } else if (problem === "unavailable") {
    notice.textContent = `The server is running but temporarily unavailable; retrying.${before}`;
  } else {
    notice.textContent = `The server cannot be reached; retrying.${before}`;
  }
}

function refreshStill(tile) {
  const pending = loading.get(tile);
  if (pending) {
    if (Date.now() - pending.startedAt < STILL_TIMEOUT_MS) return;
    pending.image.src = ""; // abandon the hung request
  }
  const img = tile.querySelector("img");
  const placeholder = tile.querySelector(".camera-still-empty");
  const next = new Image();
  loading.set(tile, { image: next, startedAt: Date.now() });
  const done = () => {
    if (loading.get(tile)?.image === next) loading.delete(tile);
  };
  next.onload = () => {
    done();
    img.src = next.src;
    img.hidden = false;
    placeholder.hidden = true;
    tile.dataset.stills = String(Number(tile.dataset.stills || 0) + 1);
  };
  // 204 (no frame yet) and an unreachable server both fail to load: keep what is shown.
  next.onerror = done;
  next.src = `${img.dataset.src}?t=${Date.now()}`;
}

// "<label> <time datetime=…>N ago</time>", as templates/cameras/_health.html writes it.
function agoParts(label, moment, seconds) {
  const time = document.createElement("time");
  time.dateTime = moment;
  time.textContent = `${age(seconds)} ago`;
  return [`${label} `, time];
}

// The tile's health line (templates/cameras/_health.html), rewritten with the same markup.
function showHealth(tile, health) {
  const capture = tile.querySelector("[data-health-capture]");
  if (capture) {
    const state = document.createElement("strong");
    state.textContent = health.capture;
    const fps = health.capture === "online" && health.measured_fps != null;
    capture.replaceChildren("Capture: ", state, fps ? ` at ${health.measured_fps.toFixed(1)} fps` : "");
  }
  const lastFrame = tile.querySelector("[data-health-last-frame]");
  if (lastFrame) {
    if (health.last_frame_at) {
      lastFrame.replaceChildren(
        ...agoParts("last frame", health.last_frame_at, health.last_frame_age_seconds),
      );
    } else {
      lastFrame.replaceChildren("no frame yet");
    }
  }
  const recorder = tile.querySelector("[data-health-recorder] strong");
  if (recorder) recorder.textContent = health.recorder;
  // Rendered empty and hidden while no event is known, so that it can appear here.
  const lastEvent = tile.querySelector("[data-health-last-event]");
  if (lastEvent) {
    lastEvent.hidden = !health.last_event_at;
    lastEvent.replaceChildren(
      ...(health.last_event_at
        ? [" · ", ...agoParts("last event", health.last_event_at, health.last_event_age_seconds)]
        : []),
    );
  }
}

// A tile for a camera the page did not list, from templates/cameras/list.html's template.
function tileFor(camera) {
  const tile = tileTemplate.content.firstElementChild.cloneNode(true);
  const page = `/cameras/${encodeURIComponent(camera.id)}/`;
  const organization = organizations[camera.organization];
  tile.dataset.cameraId = camera.id;
  tile.querySelector(".camera-tile-link").href = page;
  const img = tile.querySelector("img");
  img.alt = `Latest frame of ${camera.name}`;
  img.dataset.src = `${page}snapshot.jpg`;
  tile.querySelector("[data-name]").textContent = camera.name;
  // A camera of an organization joined since the page was loaded: named at the next reload.
  tile.querySelector("[data-organization]").textContent = organization?.name ?? "";
  tile.querySelector("[data-camera-id-shown]").textContent = camera.id;
  if (camera.source.trim().toLowerCase().startsWith("push:") && organization?.can_publish) {
    const publish = tile.querySelector("[data-publish]");
    publish.querySelector("a").href = `${page}publish`;
    publish.hidden = false;
  }
  return tile;
}

// Tiles for added cameras, none for deleted ones, in the API's order (the page's: by name).
// A tile goes only when the answer was the whole list (`complete`): a camera past the API's
// last page is not a deleted one.
function followCameras(results, complete) {
  const known = new Map(tiles.map((tile) => [tile.dataset.cameraId, tile]));
  const listed = new Set(results.map((camera) => camera.id));
  const added = results.filter((camera) => !known.has(camera.id));
  const removed = complete ? tiles.filter((tile) => !listed.has(tile.dataset.cameraId)) : [];
  if (!added.length && !removed.length) return;
  for (const tile of removed) {
    loading.delete(tile);
    tile.remove();
  }
  for (const camera of added) known.set(camera.id, tileFor(camera));
  const kept = tiles.filter((tile) => !removed.includes(tile) && !listed.has(tile.dataset.cameraId));
  tiles = [...results.map((camera) => known.get(camera.id)), ...kept];
  grid.append(...tiles);
  empty.hidden = tiles.length > 0;
  added.forEach((camera) => refreshStill(known.get(camera.id)));
}

async function refreshStatuses() {
  let results;
  try {
    const response = await fetch(CAMERAS_URL, { credentials: "same-origin", cache: "no-store" });
    const problem = problemOf(response);
    if (problem !== "ok") {
      showProblem(problem);
      return;
    }
    const page = await response.json();
    results = page.results;
    followCameras(results, page.next == null);
  } catch (error) {
    showProblem("unreachable"); // no answer at all (or one cut short)
    return;
  }
  showProblem("ok");
  const byId = new Map(results.map((camera) => [camera.id, camera]));
  for (const tile of tiles) {
    const camera = byId.get(tile.dataset.cameraId);
    if (!camera) continue;
    // The live health when the API gives it; the status column (which a worker that died may
    // have left behind) otherwise.
    const health = camera.health && typeof camera.health.capture === "string" ? camera.health : null;
    const capture = health ? health.capture : camera.status;
    const reason = (health ? health.last_error : camera.last_error) || "";
    const badge = tile.querySelector("[data-status]");
    badge.className = `badge ${capture}`;
    badge.textContent = capture.charAt(0).toUpperCase() + capture.slice(1);
    tile.querySelector("[data-error]").textContent = capture === "online" ? "" : reason;
    tile.classList.toggle("offline", capture !== "online");
    if (health) showHealth(tile, health);
  }
}

function refreshStills() {
  if (!document.hidden) tiles.forEach(refreshStill);
}

function refreshAll() {
  if (document.hidden) return;
  refreshStills();
  refreshStatuses();
}

// Always, an empty grid included: the first camera added shows up without a reload.
refreshStills();
setInterval(refreshStills, STILL_MS);
setInterval(() => {
  if (!document.hidden) refreshStatuses();
}, STATUS_MS);
document.addEventListener("visibilitychange", refreshAll);
window.addEventListener("online", refreshAll);
