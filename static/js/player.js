// The camera player: one WebSocket, the newest frame drawn on a canvas with its detections.
//
// Frames arrive in our binary format (4-byte big-endian header length, JSON header, JPEG) and are
// decoded with createImageBitmap. Only the newest frame is drawn: a frame arriving while another
// is decoding replaces the one waiting, so a slow tab skips frames instead of falling behind.
// Reconnection follows the seed: on close or error, retry with exponential backoff (1 s base,
// 5 tries), then offer a Reconnect button. The socket is closed while the tab is hidden or the
// page is left, and reopened when the tab is visible again.

import { toast } from "./ui.js";

const MAX_RETRIES = 5;
const RETRY_DELAY = 1000;
const STATUS_POLL_MS = 5000;
const BOX_COLOR = "#00ff00";

const settings = JSON.parse(document.getElementById("stream-settings").textContent);
const root = document.getElementById("player");
const canvas = document.getElementById("player-canvas");
const context = canvas.getContext("2d");
const overlay = document.getElementById("player-overlay");
const toggle = document.getElementById("show-detections");
const fpsLabel = document.getElementById("player-fps");
const latencyLabel = document.getElementById("player-latency");
const stateLabel = document.getElementById("player-state");
const reconnectButton = document.getElementById("player-reconnect");
const statusBadge = document.getElementById("camera-status");

let socket = null;
let attempt = 0;
let retryTimer = null;
let waiting = null; // the newest undecoded message
let decoding = false;
let shown = null; // { bitmap, header } of the frame on the canvas
let framesDrawn = 0;
let framesThisSecond = 0;
let latencies = [];

function streamUrl() {
  const secure = location.protocol === "https:";
  const scheme = settings.host ? settings.scheme : secure ? "wss" : "ws";
  const host = settings.host || location.host;
  return `${scheme}://${host}${settings.path}?format=binary`;
}

function setState(state, message) {
  root.dataset.state = state;
  stateLabel.textContent = state;
  overlay.hidden = !message;
  overlay.textContent = message || "";
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  reconnectButton.hidden = true;
  if (socket) return;
  setState("connecting", shown ? "" : "Connecting…");
  const ws = new WebSocket(streamUrl());
  ws.binaryType = "arraybuffer";
  socket = ws;
  ws.onopen = () => {
    attempt = 0;
    setState("live", shown ? "" : "Waiting for the first frame…");
  };
  ws.onmessage = (event) => {
    if (!(event.data instanceof ArrayBuffer)) return;
    waiting = event.data;
    if (!decoding) drawNext();
  };
  ws.onerror = () => {
    // onclose follows and decides what to do.
  };
  ws.onclose = () => {
    if (socket !== ws) return; // closed on purpose (hidden tab, page left)
    socket = null;
    scheduleRetry();
  };
}

function disconnect(state, message) {
  clearTimeout(retryTimer);
  retryTimer = null;
  const ws = socket;
  socket = null;
  if (ws) ws.close();
  setState(state, message);
}

function scheduleRetry() {
  if (attempt >= MAX_RETRIES) {
    setState("disconnected", "The stream is unavailable.");
    reconnectButton.hidden = false;
    toast("Stream connection lost.", "error");
    return;
  }
  const delay = RETRY_DELAY * 2 ** attempt;
  attempt += 1;
  setState("reconnecting", `Reconnecting in ${Math.round(delay / 1000)} s (try ${attempt} of ${MAX_RETRIES})…`);
  retryTimer = setTimeout(connect, delay);
}

function parse(buffer) {
  const view = new DataView(buffer);
  const headerLength = view.getUint32(0);
  const headerBytes = new Uint8Array(buffer, 4, headerLength);
  const header = JSON.parse(new TextDecoder().decode(headerBytes));
  const jpeg = new Blob([new Uint8Array(buffer, 4 + headerLength)], { type: "image/jpeg" });
  return { header, jpeg };
}

async function drawNext() {
  decoding = true;
  while (waiting) {
    const buffer = waiting;
    waiting = null;
    try {
      const { header, jpeg } = parse(buffer);
      const bitmap = await createImageBitmap(jpeg);
      if (shown) shown.bitmap.close();
      shown = { bitmap, header };
      render();
      framesDrawn += 1;
      framesThisSecond += 1;
      latencies.push(Date.now() - header.timestamp);
      root.dataset.frames = String(framesDrawn);
      if (!overlay.hidden && root.dataset.state === "live") setState("live", "");
    } catch (error) {
      // A frame that does not decode is skipped; the next one will do.
    }
  }
  decoding = false;
}

function render() {
  if (!shown) return;
  const { bitmap, header } = shown;
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  context.drawImage(bitmap, 0, 0);
  let boxes = 0;
  if (toggle.checked && Array.isArray(header.detections)) {
    context.strokeStyle = BOX_COLOR;
    context.fillStyle = BOX_COLOR;
    context.lineWidth = 2;
    context.font = "14px system-ui, sans-serif";
    for (const detection of header.detections) {
      const [x, y, w, h] = detection.bbox;
      context.strokeRect(x, y, w, h);
      const label = `${detection.class} (${(detection.confidence * 100).toFixed(0)}%)`;
      context.fillText(label, x, Math.max(12, y - 5));
      boxes += 1;
    }
  }
  root.dataset.boxes = String(boxes);
}

function updateStats() {
  fpsLabel.textContent = socket ? String(framesThisSecond) : "–";
  framesThisSecond = 0;
  if (latencies.length) {
    latencies.sort((a, b) => a - b);
    latencyLabel.textContent = `${Math.max(0, latencies[Math.floor(latencies.length / 2)])} ms`;
    latencies = [];
  } else {
    latencyLabel.textContent = "–";
  }
}

async function pollStatus() {
  if (document.hidden) return;
  try {
    const response = await fetch(`/api/v1/cameras/${settings.camera_id}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const camera = await response.json();
    statusBadge.className = `badge ${camera.status}`;
    statusBadge.textContent = camera.status.charAt(0).toUpperCase() + camera.status.slice(1);
  } catch (error) {
    // The stream shows the outage already.
  }
}

toggle.addEventListener("change", render);
reconnectButton.addEventListener("click", () => {
  attempt = 0;
  connect();
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    disconnect("paused", shown ? "" : "Paused while the tab is hidden.");
  } else {
    attempt = 0;
    connect();
  }
});
window.addEventListener("pagehide", () => disconnect("closed", ""));
window.addEventListener("pageshow", (event) => {
  if (event.persisted) connect();
});
setInterval(updateStats, 1000);
setInterval(pollStatus, STATUS_POLL_MS);
connect();
