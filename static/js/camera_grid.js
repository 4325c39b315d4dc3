// The cameras grid: each tile shows the camera's latest still (refreshed every 2 s while the tab
// is visible) and its status badge (from the API every 5 s). Stills cost one small request per
// tile, not a video stream per tile.
//
// The grid outlives server restarts: a tile loads at most one still at a time (a load that hangs
// is abandoned after STILL_TIMEOUT_MS, so an outage cannot pile requests up), nothing stops on a
// failure, and everything is refreshed at once when the tab becomes visible or the browser comes
// back online. While the server cannot be reached the page says so, and since when, instead of
// leaving the last badges up as if they were current.

const STILL_MS = 2000;
const STILL_TIMEOUT_MS = 10_000;
const STATUS_MS = 5000;
const grid = document.getElementById("camera-grid");
const tiles = [...document.querySelectorAll(".camera-tile")];
const loading = new Map(); // tile -> { image, startedAt } of its still being loaded

let unreachableSince = null;
let notice = null;

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
}

function showReachable(reachable) {
  if (reachable) {
    unreachableSince = null;
  } else if (unreachableSince === null) {
    unreachableSince = Date.now();
  }
  grid.dataset.reachable = String(reachable);
  if (!notice) {
    notice = document.createElement("p");
    notice.className = "error camera-grid-notice";
    notice.id = "camera-grid-notice";
    grid.before(notice);
  }
  notice.hidden = reachable;
  if (!reachable) {
    // Nobody can know a camera's state now: no badge may go on saying "Online".
    for (const badge of grid.querySelectorAll("[data-status]")) {
      badge.className = "badge";
      badge.textContent = "Unknown";
    }
  }
  notice.textContent = reachable
    ? ""
    : `The server cannot be reached since ${clock(unreachableSince)}; the stills and statuses ` +
      "below are from before then. Retrying…";
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

// Seconds as a person reads them at a glance, like the pages' `age` filter.
function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

// The tile's health line (templates/cameras/_health.html), when the page has one.
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
    lastFrame.textContent =
      health.last_frame_age_seconds == null
        ? "no frame yet"
        : `last frame ${age(health.last_frame_age_seconds)} ago`;
  }
  const recorder = tile.querySelector("[data-health-recorder] strong");
  if (recorder) recorder.textContent = health.recorder;
}

async function refreshStatuses() {
  let results;
  try {
    const response = await fetch("/api/v1/cameras", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      showReachable(false);
      return;
    }
    ({ results } = await response.json());
  } catch (error) {
    showReachable(false);
    return;
  }
  showReachable(true);
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

if (tiles.length) {
  refreshStills();
  setInterval(refreshStills, STILL_MS);
  setInterval(() => {
    if (!document.hidden) refreshStatuses();
  }, STATUS_MS);
  document.addEventListener("visibilitychange", refreshAll);
  window.addEventListener("online", refreshAll);
}
