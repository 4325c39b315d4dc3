// Webcam publisher: getUserMedia -> canvas -> JPEG -> POST to the ingest endpoint (the seed's
// body, streamName "webcam"), one request in flight at a time, at a modest fps. The detections
// the server answers with are drawn over the frame that was sent.

import { boxLabel } from "./frame_message.js";
import { csrfToken, errorMessage, toast } from "./ui.js";

const settings = JSON.parse(document.getElementById("stream-settings").textContent);
const root = document.getElementById("publisher");
const video = document.getElementById("publish-video");
const canvas = document.getElementById("publish-canvas");
const context = canvas.getContext("2d");
const startButton = document.getElementById("publish-start");
const stopButton = document.getElementById("publish-stop");
const fpsSelect = document.getElementById("publish-fps");
const sentLabel = document.getElementById("publish-sent");
const stateLabel = document.getElementById("publish-state");

const MAX_WIDTH = 640;
const QUALITY = 0.7;

let stream = null;
let timer = null;
let inFlight = false;
let sent = 0;
let lastTimestamp = 0;

function setState(text, kind = "info") {
  stateLabel.textContent = text;
  root.dataset.state = kind;
}

function cameraError(error) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser cannot use a webcam here (it needs https, or http://localhost).";
  }
  if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
    return "Permission to use the camera was denied. Allow it in the browser's site settings and try again.";
  }
  if (error && (error.name === "NotFoundError" || error.name === "OverconstrainedError")) {
    return "No camera was found on this device.";
  }
  if (error && error.name === "NotReadableError") {
    return "The camera is in use by another application.";
  }
  return `The camera could not be started: ${error ? error.message || error.name : "unknown error"}`;
}

async function start() {
  try {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw null;
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    const message = cameraError(error);
    setState(message, "error");
    toast(message, "error");
    return;
  }
  video.srcObject = stream;
  await video.play().catch(() => {});
  startButton.disabled = true;
  stopButton.disabled = false;
  setState("publishing", "live");
  schedule();
}

function stop(message = "stopped") {
  clearInterval(timer);
  timer = null;
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  startButton.disabled = false;
  stopButton.disabled = true;
  setState(message, message === "stopped" ? "info" : "error");
}

function schedule() {
  clearInterval(timer);
  timer = setInterval(sendFrame, 1000 / Number(fpsSelect.value));
}

function grab() {
  const width = Math.min(MAX_WIDTH, video.videoWidth);
  const height = Math.round((video.videoHeight * width) / video.videoWidth);
  canvas.width = width;
  canvas.height = height;
  context.drawImage(video, 0, 0, width, height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", QUALITY));
}

function base64Of(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function drawDetections(detections) {
  context.strokeStyle = "#00ff00";
  context.fillStyle = "#00ff00";
  context.lineWidth = 2;
  context.font = "14px system-ui, sans-serif";
  for (const detection of detections) {
    const [x, y, w, h] = detection.bbox;
    context.strokeRect(x, y, w, h);
    context.fillText(boxLabel(detection), x, Math.max(12, y - 5));
  }
}

async function sendFrame() {
  if (inFlight || !stream || !video.videoWidth) return;
  inFlight = true;
  try {
    const blob = await grab();
    if (!blob) return;
    // Timestamps must be unique per camera: ingest treats a repeated one as a duplicate.
    const timestamp = Math.max(Date.now(), lastTimestamp + 1);
    lastTimestamp = timestamp;
    const response = await fetch(settings.ingest_url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({
        streamName: "webcam",
        streamType: "frame",
        frame: await base64Of(blob),
        timestamp,
        camera_id: settings.camera_id,
      }),
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      if (response.status === 429) {
        setState(message, "error");
        return;
      }
      stop(message);
      toast(message, "error");
      return;
    }
    const answer = await response.json();
    drawDetections(answer.detections || []);
    sent += 1;
    sentLabel.textContent = String(sent);
    setState(`publishing · ${answer.detections.length} detection(s)`, "live");
  } catch (error) {
    setState(`Sending failed: ${error.message || error}`, "error");
  } finally {
    inFlight = false;
  }
}

startButton.addEventListener("click", start);
stopButton.addEventListener("click", () => stop());
fpsSelect.addEventListener("change", () => {
  if (stream) schedule();
});
window.addEventListener("pagehide", () => stop());
