// The cameras grid: each tile plays its camera live at a reduced size and rate (the stream's
// 320 px, 5 fps variant, encoded once by the server for every viewer of it, see
// cameras/variants.py), with its status badge and health line (one API request for every tile,
// every 5 s) and its latest object event (one request for every tile, every 10 s). The same
// cameras answer adds a tile (playing live like the others) for a camera added since the page
// was loaded and drops, with its socket, the tile of one deleted.
//
// Each tile's socket is a StreamSocket (stream_socket.js), the player's: it reconnects by itself
// and is closed while the tab is hidden, so a hidden grid costs no bandwidth. Nothing stops on a
// failure, and the statuses are refreshed at once when the tab becomes visible or the browser
// comes back online. When the statuses cannot be had the page says why and since when, instead
// of leaving the last badges up as if they were current: the server cannot be reached (network
// failure), is running but temporarily unavailable (503, e.g. Redis away), or the session is
// gone (401: a link to log in again, as retrying cannot help until then).

import { parse } from "./frame_message.js";
import { StreamSocket } from "./stream_socket.js";
import { age, clock } from "./time_format.js";

const TILE_VARIANT = "width=320&fps=5";
const STATUS_MS = 5000;
const EVENTS_MS = 10_000;
// The API's largest page: the grid shows every camera, as the page does.
const CAMERAS_URL = "/api/v1/cameras?limit=500";
// The newest object events of all the user's cameras, in one request (motion is not an object,
// and a busy street's motion events would push the objects out of the page).
const EVENTS_URL = "/api/v1/events?tracked=true&limit=100";
const BOX_COLOR = "#00ff00";
const grid = document.getElementById("camera-grid");
const tileTemplate = document.getElementById("camera-tile-template");
const empty = document.getElementById("cameras-empty");
// Per organization: its name, whether the user may publish to it, where it streams from.
const { organizations } = JSON.parse(document.getElementById("grid-settings").textContent);
let tiles = [...grid.querySelectorAll(".camera-tile")];
const sockets = new Map(); // tile -> its StreamSocket, closed when the tile goes
let newestEvents = new Map(); // camera id -> its newest object event, from the last events answer

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
  const before = ` The pictures and statuses below are from before ${since}.`;
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

// `settings`: the organization's, from cameras/views.py's _organization_stream_settings.
function tileStreamUrl(settings, path) {
  const secure = location.protocol === "https:";
  const scheme = settings.host ? settings.scheme : secure ? "wss" : "ws";
  const host = settings.host || location.host;
  return `${scheme}://${host}${path}?${TILE_VARIANT}&format=binary`;
}

// One tile's live picture: the newest frame only (one decoding at a time, later frames replace
// the one waiting), its detection boxes over it.
function playTile(tile) {
  // A camera of an organization joined since the page was loaded: it plays from the next reload.
  const settings = organizations[tile.dataset.organizationId]?.stream;
  if (!settings) return;
  const canvas = tile.querySelector("[data-tile-canvas]");
  const placeholder = tile.querySelector(".camera-still-empty");
  const context = canvas.getContext("2d");
  let waiting = null;
  let decoding = false;
  let frames = 0;

  async function drawNext() {
    decoding = true;
    while (waiting) {
      const buffer = waiting;
      waiting = null;
      try {
        const { header, jpeg } = parse(buffer);
        const bitmap = await createImageBitmap(jpeg);
        if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
          canvas.width = bitmap.width;
          canvas.height = bitmap.height;
        }
        context.drawImage(bitmap, 0, 0);
        bitmap.close();
        context.strokeStyle = BOX_COLOR;
        context.lineWidth = 1;
        for (const detection of header.detections || []) {
          const [x, y, w, h] = detection.bbox;
          context.strokeRect(x, y, w, h);
        }
        canvas.hidden = false;
        placeholder.hidden = true;
        frames += 1;
        tile.dataset.frames = String(frames);
      } catch (error) {
        // A frame that does not decode is skipped; the next one will do.
      }
    }
    decoding = false;
  }

  const stream = new StreamSocket({
    url: tileStreamUrl(settings, tile.dataset.streamPath),
    steadyMs: (settings.retry_seconds || 30) * 1000,
    onChange: () => {
      tile.dataset.link = stream.link;
    },
    onMessage: (data) => {
      if (!(data instanceof ArrayBuffer)) return;
      waiting = data;
      if (!decoding) drawNext();
    },
  });
  sockets.set(tile, stream);
  stream.connect();
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

// A tile for a camera the page did not list: the blank tile in templates/cameras/list.html's
// template (templates/cameras/_tile.html, as the listed ones), filled in with what the template
// fills in from the camera.
function tileFor(camera) {
  const tile = tileTemplate.content.firstElementChild.cloneNode(true);
  const page = `/cameras/${encodeURIComponent(camera.id)}/`;
  const organization = organizations[camera.organization];
  tile.dataset.cameraId = camera.id;
  tile.dataset.organizationId = camera.organization;
  tile.dataset.streamPath = camera.stream_path;
  tile.querySelector(".camera-tile-link").href = page;
  const canvas = tile.querySelector("[data-tile-canvas]");
  canvas.setAttribute("aria-label", `Live video of ${camera.name}`);
  tile.querySelector("[data-name]").textContent = camera.name;
  // A camera of an organization joined since the page was loaded: named at the next reload.
  tile.querySelector("[data-organization]").textContent = organization?.name ?? "";
  tile.querySelector("[data-camera-id-shown]").textContent = camera.id;
  // Rendered only when the user may publish somewhere: shown where they may.
  const publish = tile.querySelector("[data-publish]");
  const push = camera.source.trim().toLowerCase().startsWith("push:");
  if (publish && push && organization?.can_publish) {
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
    sockets.get(tile)?.close();
    sockets.delete(tile);
    tile.remove();
  }
  for (const camera of added) known.set(camera.id, tileFor(camera));
  const kept = tiles.filter((tile) => !removed.includes(tile) && !listed.has(tile.dataset.cameraId));
  tiles = [...results.map((camera) => known.get(camera.id)), ...kept];
  grid.append(...tiles);
  empty.hidden = tiles.length > 0;
  for (const camera of added) {
    const tile = known.get(camera.id);
    playTile(tile);
    showLatestEvent(tile);
  }
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

// "person · 3 min ago": the camera's newest object event, from one list for every tile.
async function refreshEvents() {
  let results;
  try {
    const response = await fetch(EVENTS_URL, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) return; // the statuses' notice says why
    ({ results } = await response.json());
  } catch (error) {
    return;
  }
  newestEvents = new Map();
  for (const event of results) {
    if (!newestEvents.has(event.camera_id)) {
      newestEvents.set(event.camera_id, event);
    }
  }
  tiles.forEach(showLatestEvent);
}

function showLatestEvent(tile) {
  const event = newestEvents.get(tile.dataset.cameraId);
  if (!event) return; // not among the newest: keep what it said
  const line = tile.querySelector("[data-latest-event]");
  const seconds = (Date.now() - Date.parse(event.started_at)) / 1000;
  line.replaceChildren(...agoParts(event.class, event.started_at, Math.max(0, seconds)));
  line.hidden = false;
}

// Every poll runs for the whole grid, never two at once and never sooner than `everyMs` after
// the last one started, however often `poll()` is asked (tab shown again, browser back online):
// a grid of any size makes one cameras request per STATUS_MS and one events request per
// EVENTS_MS. Nothing runs while the tab is hidden; visibilitychange asks again.
function poller(refresh, everyMs, { fresh = false } = {}) {
  let startedAt = fresh ? performance.now() : -Infinity; // fresh: the page was rendered just now
  let running = false;
  let timer = null;
  async function poll() {
    clearTimeout(timer);
    timer = null;
    if (running || document.hidden) return; // the running one schedules the next
    const wait = startedAt + everyMs - performance.now();
    if (wait > 0) {
      timer = setTimeout(poll, wait);
      return;
    }
    running = true;
    startedAt = performance.now();
    try {
      await refresh();
    } finally {
      running = false;
    }
    timer = setTimeout(poll, Math.max(0, startedAt + everyMs - performance.now()));
  }
  return poll;
}

const pollStatuses = poller(refreshStatuses, STATUS_MS, { fresh: true });
const pollEvents = poller(refreshEvents, EVENTS_MS);

function refreshAll() {
  pollStatuses();
  pollEvents();
}

// Always, an empty grid included: the first camera added shows up without a reload.
tiles.forEach(playTile);
refreshAll();
document.addEventListener("visibilitychange", refreshAll);
window.addEventListener("online", refreshAll);
