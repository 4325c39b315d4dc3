// The event detail page's clip: draws the object's box over the playing video, from the path the
// recorder stored (points [ms since the event started, x, y, width, height], the box in fractions
// of the frame). The clip starts `data-preroll-ms` before the event, so video time t shows the
// path at t - preroll; between two points the box is interpolated, outside the path none is drawn.

const BOX_COLOR = "#22c55e"; // the live player's green
// A box is still drawn this long after the path's last point: its last sighting lasts a frame.
const HOLD_MS = 150;

function boxAt(path, ms) {
  if (!path.length || ms < path[0][0] || ms > path[path.length - 1][0] + HOLD_MS) {
    return null;
  }
  let index = 1;
  while (index < path.length && path[index][0] < ms) {
    index += 1;
  }
  if (index >= path.length) {
    return path[path.length - 1].slice(1);
  }
  const [t0, ...a] = path[index - 1];
  const [t1, ...b] = path[index];
  const share = t1 > t0 ? (ms - t0) / (t1 - t0) : 0;
  return a.map((value, i) => value + (b[i] - value) * Math.min(Math.max(share, 0), 1));
}

function setUp(figure) {
  const video = figure.querySelector("video");
  const canvas = figure.querySelector("canvas");
  const path = JSON.parse(document.getElementById("event-clip-path").textContent);
  const prerollMs = Number(figure.dataset.prerollMs) || 0;
  const caption = figure.dataset.caption || "";
  const context = canvas.getContext("2d");

  function draw() {
    const width = video.clientWidth;
    const height = video.clientHeight;
    const scale = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * scale) || canvas.height !== Math.round(height * scale)) {
      canvas.width = Math.round(width * scale);
      canvas.height = Math.round(height * scale);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    context.setTransform(scale, 0, 0, scale, 0, 0);
    context.clearRect(0, 0, width, height);
    const box = boxAt(path, video.currentTime * 1000 - prerollMs);
    figure.dataset.boxShown = box ? "1" : "0";
    if (!box) {
      return;
    }
    const [x, y, w, h] = box;
    context.strokeStyle = BOX_COLOR;
    context.lineWidth = 2;
    context.strokeRect(x * width, y * height, w * width, h * height);
    context.fillStyle = BOX_COLOR;
    context.font = "13px system-ui, sans-serif";
    context.fillText(caption, x * width, Math.max(y * height - 5, 12));
  }

  // While playing, once per displayed frame; otherwise on every seek and resize.
  function loop() {
    draw();
    if (!video.paused && !video.ended) {
      requestAnimationFrame(loop);
    }
  }
  video.addEventListener("play", () => requestAnimationFrame(loop));
  for (const name of ["loadeddata", "seeked", "pause", "ended"]) {
    video.addEventListener(name, draw);
  }
  window.addEventListener("resize", draw);
}

for (const figure of document.querySelectorAll(".clip-frame")) {
  setUp(figure);
}
