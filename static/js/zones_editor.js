// The zones editor of the camera page: zones and motion masks drawn over the live picture.
//
// Shapes are kept, drawn and saved in fractions of the frame (0..1), as the server stores them
// (cameras/zones.py), so they hold at any size of the picture and any max_width. Everyone who
// may see the camera sees its shapes; admins draw: click to add corners, click the first
// corner (or Enter, or "Finish shape") to close, Esc to cancel. Changes are a draft until
// "Save", which PATCHes the camera through the API; the server's checks are the ones that
// count, and its words are shown as they are.

import { csrfToken, errorMessage } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const CLOSE_DISTANCE_PX = 12;
const KIND_WORDS = { zone: "Zone", mask: "Motion mask" };

const settings = JSON.parse(document.getElementById("zones-settings").textContent);
const frame = document.getElementById("player-frame");
const layer = document.getElementById("zone-layer");
const labels = document.getElementById("zone-labels");
const list = document.getElementById("zone-list");
const empty = document.getElementById("zones-empty");
const showZones = document.getElementById("show-zones");
const nameInput = document.getElementById("zone-name");
const drawZone = document.getElementById("draw-zone");
const drawMask = document.getElementById("draw-mask");
const finishButton = document.getElementById("finish-drawing");
const cancelButton = document.getElementById("cancel-drawing");
const saveButton = document.getElementById("save-zones");
const hint = document.getElementById("zone-hint");
const errorBox = document.getElementById("zones-error");

let shapes = shapesOf(settings.zones, settings.motion_masks);
let draft = null; // { kind, name, points } while a shape is being drawn
let dirty = false;
let saving = false;

function shapesOf(zones, masks) {
  return [
    ...(zones || []).map((zone) => ({ kind: "zone", name: zone.name, points: zone.points })),
    ...(masks || []).map((mask) => ({ kind: "mask", name: mask.name, points: mask.points })),
  ];
}

function pointsAttribute(points) {
  return points.map(([x, y]) => `${x},${y}`).join(" ");
}

function placed(element, [x, y]) {
  element.style.left = `${x * 100}%`;
  element.style.top = `${y * 100}%`;
  return element;
}

// --- drawing the shapes ----------------------------------------------------------------------

function render() {
  layer.replaceChildren();
  labels.replaceChildren();
  for (const shape of shapes) {
    const polygon = document.createElementNS(SVG, "polygon");
    polygon.setAttribute("points", pointsAttribute(shape.points));
    polygon.setAttribute("class", `shape ${shape.kind}`);
    layer.appendChild(polygon);
    const label = document.createElement("span");
    label.className = `zone-label ${shape.kind}`;
    label.textContent = shape.kind === "mask" ? `${shape.name} (mask)` : shape.name;
    labels.appendChild(placed(label, topLeftOf(shape.points)));
  }
  if (draft) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pointsAttribute(draft.points));
    line.setAttribute("class", `draft ${draft.kind}`);
    layer.appendChild(line);
    draft.points.forEach((point, index) => {
      const dot = document.createElement("span");
      dot.className = index === 0 ? "zone-corner first" : "zone-corner";
      labels.appendChild(placed(dot, point));
    });
  }
  layer.classList.toggle("drawing", Boolean(draft));
  frame.classList.toggle("zones-hidden", !showZones.checked && !draft);
  renderList();
  renderTools();
}

function topLeftOf(points) {
  const top = points.reduce((best, point) => (point[1] < best[1] ? point : best), points[0]);
  return top;
}

function renderList() {
  list.replaceChildren();
  for (const shape of shapes) {
    const item = document.createElement("li");
    item.className = shape.kind;
    const words = document.createElement("span");
    words.textContent = `${KIND_WORDS[shape.kind]}: ${shape.name} (${shape.points.length} corners)`;
    item.appendChild(words);
    if (settings.can_manage) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete ${KIND_WORDS[shape.kind].toLowerCase()} ${shape.name}`);
      remove.addEventListener("click", () => {
        shapes = shapes.filter((other) => other !== shape);
        changed(`Deleted ${shape.name}. Save to keep the change.`);
      });
      item.appendChild(remove);
    }
    list.appendChild(item);
  }
  empty.hidden = shapes.length > 0;
}

function renderTools() {
  if (!settings.can_manage) return;
  drawZone.hidden = drawMask.hidden = Boolean(draft);
  finishButton.hidden = cancelButton.hidden = !draft;
  finishButton.disabled = !draft || draft.points.length < 3;
  saveButton.disabled = !dirty || saving || Boolean(draft);
  saveButton.textContent = saving ? "Saving…" : "Save zones and masks";
}

function say(text) {
  hint.textContent = text;
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

function changed(text) {
  dirty = true;
  showError("");
  say(text);
  render();
}

// --- drawing a new shape ---------------------------------------------------------------------

function start(kind) {
  const limit = settings.limits.polygons;
  if (shapes.filter((shape) => shape.kind === kind).length >= limit) {
    showError(`A camera has at most ${limit} ${kind === "zone" ? "zones" : "masks"}: delete one first.`);
    return;
  }
  draft = { kind, name: nameInput.value.trim(), points: [] };
  // The tools are below the picture: bring all of it into view to draw on.
  frame.scrollIntoView({ block: "nearest" });
  showError("");
  say(`Click the picture to add the corners of the ${kind === "zone" ? "zone" : "mask"}; click the first corner or press Enter to finish, Esc to cancel.`);
  render();
}

function uniqueName(kind, wanted) {
  const taken = new Set(shapes.filter((shape) => shape.kind === kind).map((s) => s.name.toLowerCase()));
  if (wanted) return taken.has(wanted.toLowerCase()) ? null : wanted;
  // A mask needs no name a person chose; a zone does (events and the assistant use it).
  if (kind === "zone") return "";
  for (let n = 1; ; n += 1) {
    if (!taken.has(`mask ${n}`)) return `Mask ${n}`;
  }
}

function finish() {
  if (!draft || draft.points.length < 3) return;
  const name = uniqueName(draft.kind, nameInput.value.trim() || draft.name);
  if (name === "") {
    showError("Name the zone first (for example Driveway): events and the assistant call it by its name.");
    nameInput.focus();
    return;
  }
  if (name === null) {
    showError(`There is already a ${KIND_WORDS[draft.kind].toLowerCase()} named “${nameInput.value.trim() || draft.name}”: choose another name.`);
    nameInput.focus();
    return;
  }
  shapes = [...shapes, { kind: draft.kind, name, points: draft.points }];
  draft = null;
  nameInput.value = "";
  changed(`Added ${name}. Save to keep it.`);
}

function cancel() {
  draft = null;
  say("");
  render();
}

// A click this close to an edge of the picture is on the edge: a mask over a timestamp in a
// corner must reach the corner, and a hand cannot hit the last pixel.
const EDGE_SNAP_PX = 6;

function fractionOf(event) {
  const box = layer.getBoundingClientRect();
  const along = (offset, length) => {
    if (offset <= EDGE_SNAP_PX) return 0;
    if (offset >= length - EDGE_SNAP_PX) return 1;
    return Math.round((offset / length) * 10000) / 10000;
  };
  return [along(event.clientX - box.left, box.width), along(event.clientY - box.top, box.height)];
}

function nearFirstCorner(event) {
  if (draft.points.length < 3) return false;
  const box = layer.getBoundingClientRect();
  const [x, y] = draft.points[0];
  return Math.hypot(event.clientX - (box.left + x * box.width), event.clientY - (box.top + y * box.height)) <= CLOSE_DISTANCE_PX;
}

layer.addEventListener("click", (event) => {
  if (!draft) return;
  if (nearFirstCorner(event)) {
    finish();
    return;
  }
  draft.points.push(fractionOf(event));
  if (draft.points.length >= settings.limits.points) {
    say(`That is the most corners a shape may have (${settings.limits.points}).`);
    finish();
    return;
  }
  render();
});

// --- saving ------------------------------------------------------------------------------------

async function save() {
  saving = true;
  showError("");
  render();
  const body = {
    zones: shapes.filter((s) => s.kind === "zone").map(({ name, points }) => ({ name, points })),
    motion_masks: shapes.filter((s) => s.kind === "mask").map(({ name, points }) => ({ name, points })),
  };
  try {
    const response = await fetch(settings.api, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      showError(`Not saved: ${await errorMessage(response)}`);
      return;
    }
    const camera = await response.json();
    shapes = shapesOf(camera.zones, camera.motion_masks);
    dirty = false;
    say("Saved. New events record these zones, and motion ignores these masks, from the next frames on.");
  } catch (error) {
    showError("Not saved: the server could not be reached. Your shapes are still here; try again.");
  } finally {
    saving = false;
    render();
  }
}

// --- wiring --------------------------------------------------------------------------------------

showZones.addEventListener("change", render);
if (settings.can_manage) {
  drawZone.addEventListener("click", () => start("zone"));
  drawMask.addEventListener("click", () => start("mask"));
  finishButton.addEventListener("click", finish);
  cancelButton.addEventListener("click", cancel);
  saveButton.addEventListener("click", save);
  document.addEventListener("keydown", (event) => {
    if (!draft) return;
    if (event.key === "Escape") cancel();
    else if (event.key === "Enter") {
      event.preventDefault();
      finish();
    }
  });
  window.addEventListener("beforeunload", (event) => {
    if (dirty) event.preventDefault();
  });
}
render();
