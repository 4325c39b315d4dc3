// The camera player: one WebSocket, the camera's picture with its detections drawn over it.
//
// Two formats. Where Media Source Extensions play H.264 (`MediaSource.isTypeSupported` of
// avc1.42c01e), the player asks for `?format=h264` and plays the fragments in a <video> (see
// live_video.js: held at the live edge, never more than ~150 ms buffered); the canvas over it
// draws the boxes of the frame the <video> presents, found by its media_time through
// requestVideoFrameCallback. The first message of each socket is the camera's latest JPEG, drawn
// on the canvas until the video's first frame, so a viewer joining mid-GOP sees a picture at once.
// Without MSE or the codec, or when MSE fails, it falls back to `?format=binary`: frames arrive
// in our binary format (4-byte big-endian header length, JSON header, JPEG) and are decoded
// with createImageBitmap. Only the newest frame is drawn: a frame arriving while another is
// decoding replaces the one waiting, so a slow tab skips frames instead of falling behind.
// The HUD says which format plays and the bitrate received over the last second.
//
// The player never gives up while the page is visible (its StreamSocket, see stream_socket.js and
// reconnect.js for the policy): after a lost connection it retries at 1, 2, 4, 8 and 16 s, then
// every 30 s, and at once when the browser comes back online or the tab becomes visible; it says
// when the next try is and offers "Retry now". While the tab is hidden the socket is closed and
// nothing is retried.
//
// What the page says comes from two witnesses that must agree: the stream (are frames arriving?)
// and the camera API polled every 5 s (its `health` when the API gives one, else status and
// last_error, which a worker that died may have left behind). A frame older than a few
// frame intervals is "stale since <time>", never "live"; an offline camera says so with its
// reason; a push: camera nobody feeds is "waiting for a publisher". The status badge follows the
// same verdict, so it cannot say "Online" over a dead stream.

import { FIRST_TRIES, DEFAULT_STEADY_DELAY_MS } from "./reconnect.js";
import { boxLabel, parse } from "./frame_message.js";
import { LiveVideo, h264Supported, parseMessage } from "./live_video.js";
import { StreamSocket } from "./stream_socket.js";
import { clock } from "./time_format.js";

const STATUS_POLL_MS = 5000;
const STALE_MIN_MS = 3000; // frames are stale after this long without one...
const STALE_FRAME_INTERVALS = 3; // ...or this many of the stream's frame intervals, if longer
const OLD_ON_ARRIVAL_MS = 10_000; // the cached frame sent on connect may be hours old
const STREAM_BEHIND_MS = 10_000; // the API saw frames this much newer than ours: reconnect
const STREAM_RECONNECT_MIN_MS = 30_000;
const BOX_COLOR = "#00ff00";
const VIDEO_START_MS = 5000; // fragments this long and no frame shown: MSE does not work here
const KEPT_SAMPLES = 3000; // latencies and shown frames kept for tests and the bench

const settings = JSON.parse(document.getElementById("stream-settings").textContent);
const steadyDelayMs = (settings.retry_seconds || DEFAULT_STEADY_DELAY_MS / 1000) * 1000;
const root = document.getElementById("player");
const frame = document.getElementById("player-frame");
const canvas = document.getElementById("player-canvas");
const video = document.getElementById("player-video");
const context = canvas.getContext("2d");
const overlay = document.getElementById("player-overlay");
const overlayMessage = document.getElementById("player-message");
const overlayDetail = document.getElementById("player-detail");
const toggle = document.getElementById("show-detections");
const fpsLabel = document.getElementById("player-fps");
const latencyLabel = document.getElementById("player-latency");
const formatLabel = document.getElementById("player-format");
const bitrateLabel = document.getElementById("player-bitrate");
const stateLabel = document.getElementById("player-state");
const retryButton = document.getElementById("player-reconnect");
const statusBadge = document.getElementById("camera-status");
const cameraError = document.getElementById("camera-error");

let firstFrameOfSocket = true;
let lastStreamReconnect = 0;

// The picture.
let waiting = null; // the newest undecoded message
let decoding = false;
let shown = null; // { bitmap, header } of the frame on the canvas
let shownAt = 0; // wall-clock ms the shown frame stands for (its arrival, or its capture if old)
let lastLiveAt = null; // arrival of the newest frame that counted as live
let frameIntervalMs = 0; // smoothed interval between live frames
let framesDrawn = 0;
let framesThisSecond = 0;
let latencies = [];

// The format: "h264" while MSE plays it, else "jpeg" (for good, once MSE failed on this page).
let format = h264Supported() ? "h264" : "jpeg";
let fallbackReason = "";
let videoShowing = false; // the <video> has presented a frame of this socket's stream
let lastFragmentAt = 0;
let bytesThisSecond = 0;
let bytesReceived = 0; // since the page loaded, every socket's messages
let secondStartedAt = performance.now();
let kbps = null;
const recentLatencies = []; // capture to display, ms
const shownFrames = []; // what each presented video frame was drawn with
// When the page first showed a JPEG and a video frame (performance.now(), ms), and the first
// fragment it was sent (a viewer joining mid-GOP is sent the GOP's key fragment first).
const firsts = { jpegAt: null, videoAt: null, fragment: null };

// The camera, as the API last described it; apiProblem is "signed-out" or "gone" when it refused.
let camera = null;
let apiProblem = null;

function streamUrl() {
  const secure = location.protocol === "https:";
  const scheme = settings.host ? settings.scheme : secure ? "wss" : "ws";
  const host = settings.host || location.host;
  return `${scheme}://${host}${settings.path}?format=${format === "h264" ? "h264" : "binary"}`;
}

function keepLast(list, count) {
  if (list.length > count) list.splice(0, list.length - count);
}

// The <video> under the canvas (H.264), or the canvas alone (JPEG).
function showVideo(on) {
  frame.classList.toggle("video", on);
  video.hidden = !on;
}

// MSE is missing or failed: JPEG frames from now on, on a new socket.
function fallBack(reason) {
  if (format !== "h264") return;
  format = "jpeg";
  fallbackReason = reason;
  root.dataset.fallback = reason;
  console.warn(`Sightline player: H.264 unavailable (${reason}); showing JPEG frames.`);
  live.stop();
  showVideo(false);
  videoShowing = false;
  showFormat();
  stream.reconnectNow();
}

function showFormat() {
  root.dataset.format = format;
  formatLabel.textContent = format === "h264" ? "H.264" : "JPEG";
}

// A frame of the <video> was presented: its boxes over it, its latency from capture.
function videoFrameShown(header, metadata) {
  if (format !== "h264") return;
  const now = Date.now();
  if (!videoShowing) {
    videoShowing = true;
    if (firsts.videoAt === null) firsts.videoAt = performance.now();
    if (shown && shown.bitmap) shown.bitmap.close();
  }
  const wasLive = root.dataset.state === "live";
  shown = { bitmap: null, header: header || (shown && shown.header) || {} };
  noteArrival(shown.header, now);
  framesDrawn += 1;
  framesThisSecond += 1;
  root.dataset.frames = String(framesDrawn);
  if (header && Number.isFinite(header.timestamp) && metadata.presentationTime) {
    const latency = performance.timeOrigin + metadata.presentationTime - header.timestamp;
    latencies.push(Math.round(latency));
    recentLatencies.push(latency);
    keepLast(recentLatencies, KEPT_SAMPLES);
  }
  render();
  shownFrames.push({
    mediaTime: metadata.mediaTime,
    headerMediaTime: header ? header.media_time : null,
    seq: header ? header.seq : null,
    timestamp: header ? header.timestamp : null,
    // From the fragment's arrival to its frame's presentation, ms: the browser's share.
    inBrowser: header ? metadata.presentationTime - header.receivedAt : null,
    boxes: Number(root.dataset.boxes),
    labels: root.dataset.boxLabels,
  });
  keepLast(shownFrames, KEPT_SAMPLES);
  if (!wasLive) showLabels();
}

const live = new LiveVideo(video, { onFrame: videoFrameShown, onFailure: fallBack });

// What tests and the bench read: the format, the bitrate, capture-to-display latencies (ms) and
// what each presented frame's boxes came from.
window.sightlinePlayer = {
  get format() {
    return format;
  },
  get fallback() {
    return fallbackReason;
  },
  get kbps() {
    return kbps;
  },
  get bytesReceived() {
    return bytesReceived;
  },
  get framesShown() {
    return framesDrawn;
  },
  get videoFrames() {
    return live.presented;
  },
  get bufferedAhead() {
    return live.bufferedAhead();
  },
  get seeks() {
    return live.seeks;
  },
  latencies: recentLatencies,
  frames: shownFrames,
  firsts,
};

// --- the connection ------------------------------------------------------------------------

const stream = new StreamSocket({
  url: streamUrl,
  steadyMs: steadyDelayMs,
  onSocket: () => {
    firstFrameOfSocket = true;
    // The socket's first message, the camera's latest JPEG, is drawn over the video until the
    // video of this socket shows.
    videoShowing = false;
    const asked = format;
    stream.socket.addEventListener("close", (event) => {
      // 4400: the server refuses H.264 for this request.
      if (event.code === 4400 && asked === "h264") fallBack(`refused: ${event.reason}`);
    });
  },
  onChange: () => showLabels(),
  onMessage: (data) => {
    const bytes = data instanceof ArrayBuffer ? data.byteLength : data.length;
    bytesThisSecond += bytes;
    bytesReceived += bytes;
    if (!(data instanceof ArrayBuffer)) {
      // A server without H.264 sends the seed's JSON.
      if (format === "h264") fallBack("the server sent JSON frames");
      return;
    }
    if (format === "h264") {
      let message;
      try {
        message = parseMessage(data);
      } catch (error) {
        return; // a message that does not parse is skipped
      }
      const { header, payload } = message;
      if (header.kind === "init") {
        // A new stream on an open socket (the camera's encoder restarted): its last picture
        // stays on the canvas until the new stream's first frame, rather than a black video.
        if (videoShowing && video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) {
          sizeCanvas(video.videoWidth, video.videoHeight);
          context.drawImage(video, 0, 0);
        }
        videoShowing = false;
        showVideo(true);
        live.start(header, payload);
        return;
      }
      if (header.kind === "video") {
        lastFragmentAt = Date.now();
        header.receivedAt = performance.now(); // for the latency's share of the browser
        if (!firsts.fragment) firsts.fragment = { seq: header.seq, key: header.key };
        live.append(header, payload);
        return;
      }
      if (header.kind) return; // a kind of message this player does not know
      if (videoShowing) return; // the video already shows newer frames
    }
    waiting = data;
    if (!decoding) drawNext();
  },
});

// --- what the page says ----------------------------------------------------------------------

function staleAfterMs() {
  return Math.max(STALE_MIN_MS, STALE_FRAME_INTERVALS * frameIntervalMs);
}

function framesAreFresh(now) {
  return lastLiveAt !== null && now - lastLiveAt <= staleAfterMs();
}

function isPush(source) {
  return typeof source === "string" && source.trim().toLowerCase().startsWith("push:");
}

function capitalized(word) {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

// The camera as the API last described it, or null: capture state (connecting, online, offline
// or disabled), the reason it gives, when it last had a frame, and whether it is a push: camera.
function cameraNow() {
  if (!camera) return null;
  const health = camera.health && typeof camera.health.capture === "string" ? camera.health : null;
  return {
    capture: health ? health.capture : camera.status,
    reason: (health ? health.last_error : camera.last_error) || "",
    lastFrameAt: Date.parse((health && health.last_frame_at) || camera.last_frame_at || ""),
    push: isPush(camera.source),
  };
}

function cameraBadge(known) {
  return known ? [known.capture, capitalized(known.capture)] : null;
}

// The verdict: what the player is doing, in the HUD, over the picture and on the badge.
function describe(now) {
  const { link, attempt, retryAt } = stream;
  const staleText = shown ? `stale since ${clock(shownAt)}` : "";
  const noConnection = ["connecting", "No connection"];
  if (link === "paused" || link === "closed") {
    return { state: link, hud: link, message: shown ? "" : "Paused while the tab is hidden." };
  }
  if (link !== "open" && apiProblem === "signed-out") {
    return {
      state: "signed-out",
      hud: "signed out",
      message: "Signed out",
      detail: "Sign in again to watch this camera; the player keeps trying.",
      badge: noConnection,
    };
  }
  if (link !== "open" && apiProblem === "gone") {
    return {
      state: "gone",
      hud: "no such camera",
      message: "This camera no longer exists.",
      badge: ["offline", "Deleted"],
    };
  }
  if (link === "reconnecting") {
    const seconds = Math.max(0, Math.ceil((retryAt - now) / 1000));
    const plan =
      attempt <= FIRST_TRIES
        ? `try ${attempt} of ${FIRST_TRIES}, then every ${Math.round(steadyDelayMs / 1000)} s`
        : `retrying every ${Math.round(steadyDelayMs / 1000)} s`;
    return {
      state: "reconnecting",
      hud: "reconnecting",
      message: `Reconnecting in ${seconds} s`,
      detail: [plan, staleText].filter(Boolean).join(" · "),
      badge: noConnection,
      retry: true,
    };
  }
  if (link === "connecting") {
    const retrying = attempt > 0;
    return {
      state: "connecting",
      hud: "connecting",
      message: retrying ? "Reconnecting…" : "Connecting…",
      detail: staleText,
      badge: retrying ? noConnection : cameraBadge(cameraNow()),
    };
  }
  // The socket is open: the frames and the camera's state decide.
  if (framesAreFresh(now)) {
    return { state: "live", hud: "live", message: "", badge: ["online", "Online"] };
  }
  const known = cameraNow();
  const capture = known ? known.capture : null;
  const reason = known ? known.reason : "";
  if (known && known.push && capture !== "online") {
    const message = "Waiting for a publisher";
    return {
      state: "waiting-publisher",
      hud: "waiting for a publisher",
      message,
      // The API's reason may say the same words; say them once.
      detail: [staleText, reason.startsWith(message) ? "" : reason].filter(Boolean).join(" · "),
      badge: ["connecting", "No publisher"],
    };
  }
  if (capture === "disabled") {
    return {
      state: "disabled",
      hud: "disabled",
      message: "This camera is disabled.",
      detail: staleText,
      badge: ["offline", "Disabled"],
    };
  }
  if (capture === "offline") {
    return {
      state: "offline",
      hud: "offline",
      message: "Offline",
      detail: [reason || "The camera sends no frames.", staleText].filter(Boolean).join(" · "),
      badge: ["offline", "Offline"],
    };
  }
  if (shown) {
    return {
      state: "stale",
      hud: "stale",
      message: `Stale since ${clock(shownAt)}`,
      detail: capture === "connecting" ? reason : "",
      badge: capture === "online" ? ["connecting", "Stale"] : cameraBadge(known),
    };
  }
  if (capture === "connecting") {
    return {
      state: "waiting",
      hud: "connecting to the camera",
      message: "Connecting to the camera…",
      detail: reason,
      badge: cameraBadge(known),
    };
  }
  return {
    state: "waiting",
    hud: "waiting",
    message: "Waiting for the first frame…",
    badge: cameraBadge(known),
  };
}

function showLabels() {
  const verdict = describe(Date.now());
  root.dataset.state = verdict.state;
  stateLabel.textContent = verdict.hud;
  overlay.hidden = !verdict.message;
  overlayMessage.textContent = verdict.message || "";
  overlayDetail.textContent = verdict.detail || "";
  overlayDetail.hidden = !verdict.detail;
  retryButton.hidden = !verdict.retry;
  if (verdict.badge) {
    const [kind, text] = verdict.badge;
    statusBadge.className = `badge ${kind}`;
    statusBadge.textContent = text;
  }
}

// --- the picture -----------------------------------------------------------------------------

// Whether a frame that just arrived shows the camera now. Only the first frame of a socket can
// be old (the server sends its cached latest frame on connect); judging the later ones by their
// arrival keeps a skewed server clock from making a live stream look stale.
function noteArrival(header, arrivedAt) {
  const captured = Number(header.timestamp);
  const first = firstFrameOfSocket;
  firstFrameOfSocket = false;
  if (first && Number.isFinite(captured) && arrivedAt - captured > OLD_ON_ARRIVAL_MS) {
    shownAt = captured;
    return;
  }
  if (lastLiveAt !== null && !first) {
    const gap = Math.min(arrivedAt - lastLiveAt, 10_000);
    frameIntervalMs = frameIntervalMs ? 0.8 * frameIntervalMs + 0.2 * gap : gap;
  }
  shownAt = arrivedAt;
  lastLiveAt = arrivedAt;
}

async function drawNext() {
  decoding = true;
  while (waiting) {
    const buffer = waiting;
    waiting = null;
    try {
      const { header, jpeg } = parse(buffer);
      const bitmap = await createImageBitmap(jpeg);
      if (videoShowing) {
        bitmap.close(); // the video started while it decoded
        continue;
      }
      if (shown && shown.bitmap) shown.bitmap.close();
      shown = { bitmap, header };
      if (firsts.jpegAt === null) firsts.jpegAt = performance.now();
      render();
      const now = Date.now();
      const wasLive = root.dataset.state === "live";
      noteArrival(header, now);
      framesDrawn += 1;
      framesThisSecond += 1;
      latencies.push(now - header.timestamp);
      root.dataset.frames = String(framesDrawn);
      if (!wasLive) showLabels();
    } catch (error) {
      // A frame that does not decode is skipped; the next one will do.
    }
  }
  decoding = false;
}

function sizeCanvas(width, height) {
  if (width && height && (canvas.width !== width || canvas.height !== height)) {
    canvas.width = width;
    canvas.height = height;
  }
}

// The shown frame: a JPEG drawn with its boxes, or, over the <video>, its boxes alone.
function render() {
  if (!shown) return;
  const { bitmap, header } = shown;
  if (videoShowing) {
    sizeCanvas(video.videoWidth, video.videoHeight);
    context.clearRect(0, 0, canvas.width, canvas.height);
  } else if (bitmap) {
    sizeCanvas(bitmap.width, bitmap.height);
    context.drawImage(bitmap, 0, 0);
  } else {
    return;
  }
  const labels = [];
  if (toggle.checked && Array.isArray(header.detections)) {
    context.strokeStyle = BOX_COLOR;
    context.fillStyle = BOX_COLOR;
    context.lineWidth = 2;
    context.font = "14px system-ui, sans-serif";
    for (const detection of header.detections) {
      const [x, y, w, h] = detection.bbox;
      context.strokeRect(x, y, w, h);
      const label = boxLabel(detection);
      context.fillText(label, x, Math.max(12, y - 5));
      labels.push(label);
    }
  }
  root.dataset.boxes = String(labels.length);
  // What the boxes say, for people reading the page's state (and its tests).
  root.dataset.boxLabels = labels.join("|");
}

// --- once a second and every 5 s -------------------------------------------------------------

function tick() {
  fpsLabel.textContent = stream.link === "open" ? String(framesThisSecond) : "–";
  framesThisSecond = 0;
  const now = performance.now();
  kbps = stream.link === "open" ? (bytesThisSecond * 8) / (now - secondStartedAt) : null;
  bitrateLabel.textContent = kbps === null ? "–" : `${Math.round(kbps)} kbit/s`;
  bytesThisSecond = 0;
  secondStartedAt = now;
  // Fragments for a while and still not one frame shown: this browser's MSE does not play it.
  // (Only before the first frame: later, a seek may leave no current frame for a moment.)
  if (
    format === "h264" &&
    live.active &&
    live.presented === 0 &&
    live.appendedAt &&
    Date.now() - live.appendedAt > VIDEO_START_MS &&
    Date.now() - lastFragmentAt < 1000
  ) {
    fallBack("no video frame decoded");
  } else if (format === "h264" && live.active) {
    live.holdLiveEdge();
  }
  if (latencies.length) {
    latencies.sort((a, b) => a - b);
    latencyLabel.textContent = `${Math.max(0, latencies[Math.floor(latencies.length / 2)])} ms`;
    latencies = [];
  } else {
    latencyLabel.textContent = "–";
  }
  showLabels();
}

// The API saw frames well after the last one that reached us: the stream, not the camera, is
// stuck (a half-open connection after a network change, say). Both times are the server's clock.
function streamFellBehind() {
  const known = cameraNow();
  if (stream.link !== "open" || !shown || !known || known.capture !== "online") return false;
  const ourFrameAt = Number(shown.header.timestamp);
  if (!Number.isFinite(known.lastFrameAt) || !Number.isFinite(ourFrameAt)) return false;
  return known.lastFrameAt - ourFrameAt > STREAM_BEHIND_MS && !framesAreFresh(Date.now());
}

async function pollStatus() {
  if (document.hidden) return;
  try {
    const response = await fetch(`/api/v1/cameras/${settings.camera_id}`, {
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) {
      apiProblem = "signed-out";
    } else if (response.status === 404) {
      apiProblem = "gone";
    } else if (response.ok) {
      apiProblem = null;
      camera = await response.json();
      const { capture, reason } = cameraNow();
      cameraError.textContent = capture === "online" ? "" : reason;
      cameraError.hidden = capture === "online" || !reason;
    }
  } catch (error) {
    // The server is unreachable: the stream's state already says so.
    return;
  }
  const now = Date.now();
  if (streamFellBehind() && now - lastStreamReconnect >= STREAM_RECONNECT_MIN_MS) {
    lastStreamReconnect = now;
    stream.reconnectNow();
  }
  showLabels();
}

// --- events ----------------------------------------------------------------------------------

toggle.addEventListener("change", render);
retryButton.addEventListener("click", () => stream.connect());
// The stream pauses and resumes itself with the page; the camera's state is asked again too.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) pollStatus();
});
setInterval(tick, 1000);
setInterval(pollStatus, STATUS_POLL_MS);
showFormat();
stream.connect();
pollStatus();
