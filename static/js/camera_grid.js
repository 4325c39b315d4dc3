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
    const badge = tile.querySelector("[data-status]");
    badge.className = `badge ${camera.status}`;
    badge.textContent = camera.status.charAt(0).toUpperCase() + camera.status.slice(1);
    tile.querySelector("[data-error]").textContent = camera.status === "offline" ? camera.last_error : "";
    tile.classList.toggle("offline", camera.status === "offline");
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
