// The cameras grid: each tile shows the camera's latest still (refreshed every 2 s while the tab
// is visible) and its status badge (from the API every 5 s). Stills cost one small request per
// tile, not a video stream per tile.

const STILL_MS = 2000;
const STATUS_MS = 5000;
const tiles = [...document.querySelectorAll(".camera-tile")];

function refreshStill(tile) {
  const img = tile.querySelector("img");
  const placeholder = tile.querySelector(".camera-still-empty");
  const next = new Image();
  next.onload = () => {
    img.src = next.src;
    img.hidden = false;
    placeholder.hidden = true;
  };
  // 204 (no frame yet) fails to load as an image: keep what is shown.
  next.src = `${img.dataset.src}?t=${Date.now()}`;
}

async function refreshStatuses() {
  try {
    const response = await fetch("/api/v1/cameras", { credentials: "same-origin" });
    if (!response.ok) return;
    const { results } = await response.json();
    const byId = new Map(results.map((camera) => [camera.id, camera]));
    for (const tile of tiles) {
      const camera = byId.get(tile.dataset.cameraId);
      if (!camera) continue;
      const badge = tile.querySelector("[data-status]");
      badge.className = `badge ${camera.status}`;
      badge.textContent = camera.status.charAt(0).toUpperCase() + camera.status.slice(1);
      tile.querySelector("[data-error]").textContent = camera.status === "offline" ? camera.last_error : "";
    }
  } catch (error) {
    // Try again on the next tick.
  }
}

function tick() {
  if (!document.hidden) tiles.forEach(refreshStill);
}

if (tiles.length) {
  tick();
  setInterval(tick, STILL_MS);
  setInterval(() => {
    if (!document.hidden) refreshStatuses();
  }, STATUS_MS);
}
