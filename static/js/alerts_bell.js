// The alerts bell in the header (templates/notifications/_bell.html).
//
// The list: the 20 latest browser alerts, loaded from /api/v1/alerts?browser=true&limit=20 at page
// load, on every open of the dropdown and after every reconnection of the socket (so an alert
// raised while it was away is not missed), and prepended live from the /ws/alerts WebSocket.
// Each alert is the JSON of notifications/browser.py: the same from the API and the socket.
//
// Unread: the badge counts the listed alerts newer than the newest one listed when this user last
// opened the dropdown. That alert's id is kept in localStorage under
// `sightline.alerts.<user id>.seen` (per browser, not per account: simple, and a new browser
// shows what came lately as unread); other tabs follow through the `storage` event.
//
// Browser notifications are opt-in: the "Notify me in this browser" toggle asks for permission
// when clicked (never on load) and remembers the choice under `sightline.alerts.<user id>.notify`.
// With permission granted and the toggle on, each live alert shows one Notification, whatever
// the number of tabs: every tab hears the alert, but only the first to claim its id under a Web
// Lock (a plain localStorage check where Web Locks are missing) shows it, and the notification's
// tag is the alert id, so the system replaces rather than stacks a duplicate.
//
// The socket never pauses for a hidden tab (a hidden tab is when a notification matters) and
// reconnects after 1, 2, 4, 8, 16 s then every 30 s (reconnect.js, as the camera streams).

import { retryDelay } from "./reconnect.js";

const SHOWN = 20;
const LONG_LIVED_MS = 5000; // a socket open this long starts the retries afresh
const NOTIFIED_KEPT = 100; // alert ids remembered as notified, against a second tab's copy

const bell = document.getElementById("alerts-bell");
if (bell) start(bell);

function start(root) {
  const part = (name) => root.querySelector(`[data-bell-${name}]`);
  const button = root.querySelector(".bell-button");
  const panel = part("panel");
  const list = part("list");
  const badge = part("badge");
  const toggle = part("notify");
  const storageKey = `sightline.alerts.${root.dataset.user}`;
  const seenKey = `${storageKey}.seen`;
  const notifyKey = `${storageKey}.notify`;
  const notifiedKey = `${storageKey}.notified`;
  const alerts = new Map(); // id -> alert, the SHOWN newest
  const items = new Map(); // id -> its <li>, kept so that a re-render reloads no thumbnail
  let loaded = false;
  let loadFailed = false;

  const seenId = () => Number(localStorage.getItem(seenKey) || 0);
  const newestId = () => Math.max(0, ...alerts.keys());

  function render() {
    const newest = [...alerts.values()].sort((a, b) => b.alert.id - a.alert.id);
    list.replaceChildren(
      ...newest.map((alert) => {
        if (!items.has(alert.alert.id)) items.set(alert.alert.id, alertItem(alert));
        return items.get(alert.alert.id);
      }),
    );
    part("loading").hidden = loaded || loadFailed;
    part("error").hidden = !loadFailed || loaded;
    part("empty").hidden = !loaded || alerts.size > 0;
    const unread = newest.filter((item) => item.alert.id > seenId()).length;
    badge.hidden = unread === 0;
    badge.textContent = unread >= SHOWN ? `${SHOWN}+` : String(unread);
    button.title = unread ? `Alerts: ${unread} new` : "Alerts";
  }

  function add(alert) {
    alerts.set(alert.alert.id, alert);
    for (const id of [...alerts.keys()].sort((a, b) => b - a).slice(SHOWN)) {
      alerts.delete(id);
      items.delete(id);
    }
  }

  async function load() {
    try {
      const response = await fetch(root.dataset.api, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = await response.json();
      for (const alert of body.results) add(alert);
      loaded = true;
      loadFailed = false;
    } catch (error) {
      loadFailed = true;
    }
    if (!panel.hidden) markSeen();
    render();
  }

  function markSeen() {
    if (newestId() > seenId()) localStorage.setItem(seenKey, String(newestId()));
  }

  function open(opened) {
    panel.hidden = !opened;
    button.setAttribute("aria-expanded", String(opened));
    if (opened) {
      markSeen();
      render();
      load();
    }
  }

  button.addEventListener("click", () => open(panel.hidden));
  document.addEventListener("click", (event) => {
    if (!panel.hidden && !root.contains(event.target)) open(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) {
      open(false);
      button.focus();
    }
  });
  window.addEventListener("storage", (event) => {
    if (event.key === seenKey) render();
  });

  // --- browser notifications ------------------------------------------------------------

  const supported = "Notification" in window;
  const notifyWanted = () => localStorage.getItem(notifyKey) === "on";
  const notifying = () => supported && notifyWanted() && Notification.permission === "granted";

  function renderNotify() {
    part("notify-unsupported").hidden = supported;
    toggle.disabled = !supported;
    toggle.checked = notifying();
    // Said only to someone who asked: a denial nobody asked about is no news.
    part("notify-denied").hidden = !(
      supported &&
      notifyWanted() &&
      Notification.permission === "denied"
    );
  }

  toggle.addEventListener("change", async () => {
    if (!toggle.checked) {
      localStorage.setItem(notifyKey, "off");
      renderNotify();
      return;
    }
    localStorage.setItem(notifyKey, "on");
    renderNotify(); // unchecked until the browser says yes
    if (Notification.permission === "default") {
      try {
        await Notification.requestPermission();
      } catch (error) {
        // Older browsers take a callback instead; the state below says what happened.
      }
    }
    renderNotify();
  });

  async function claim(id) {
    // True in the one tab that shows alert `id`'s notification.
    const firstClaim = () => {
      const notified = JSON.parse(localStorage.getItem(notifiedKey) || "[]");
      if (notified.includes(id)) return false;
      notified.push(id);
      localStorage.setItem(notifiedKey, JSON.stringify(notified.slice(-NOTIFIED_KEPT)));
      return true;
    };
    if (navigator.locks) return navigator.locks.request(notifiedKey, firstClaim);
    return firstClaim();
  }

  async function notify(alert) {
    if (!notifying() || !(await claim(alert.alert.id))) return;
    const { title, body } = describe(alert);
    const notification = new Notification(title, {
      body,
      icon: alert.snapshot_url,
      image: alert.snapshot_url,
      tag: `sightline-alert-${alert.alert.id}`,
    });
    notification.onclick = () => {
      window.focus();
      location.href = alert.url;
      notification.close();
    };
  }

  // --- the live socket --------------------------------------------------------------------

  let attempt = 0;
  let socket = null;
  let retryTimer = null;
  let everOpened = false;

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}${root.dataset.socket}`;
  }

  // `data-link` on the bell says how the socket is: connecting, open or reconnecting.
  function setLink(link) {
    root.dataset.link = link;
    part("link").textContent = link === "reconnecting" ? "reconnecting…" : "";
  }

  function connect() {
    clearTimeout(retryTimer);
    if (socket) return;
    const ws = new WebSocket(socketUrl());
    socket = ws;
    setLink(everOpened ? "reconnecting" : "connecting");
    let openedAt = 0;
    ws.onopen = () => {
      openedAt = Date.now();
      setLink("open");
      if (everOpened) load(); // catch up on what was raised while away
      everOpened = true;
    };
    ws.onmessage = (event) => {
      let alert;
      try {
        alert = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (!alert || alert.type !== "alert") return;
      add(alert);
      loaded = true;
      if (!panel.hidden) markSeen();
      render();
      notify(alert);
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      if (openedAt && Date.now() - openedAt >= LONG_LIVED_MS) attempt = 0;
      const delay = retryDelay(attempt);
      attempt += 1;
      setLink("reconnecting");
      retryTimer = setTimeout(connect, delay);
    };
  }

  window.addEventListener("online", () => {
    if (!socket) {
      attempt = 0;
      connect();
    }
  });
  window.addEventListener("pagehide", () => {
    clearTimeout(retryTimer);
    const ws = socket;
    socket = null;
    if (ws) ws.close();
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) connect();
  });

  renderNotify();
  render();
  load();
  connect();
}

// "person on Front door", "Driveway · 14:03" in the browser's local time.
function describe(alert) {
  const event = alert.event;
  const title = `${event.label} on ${event.camera.name}`;
  const when = localTime(event.started_at);
  const body = [...(event.zones.length ? [event.zones.join(", ")] : []), when].join(" · ");
  return { title, body };
}

function localTime(iso) {
  const moment = new Date(iso);
  const clock = moment.toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  if (moment.toDateString() === new Date().toDateString()) return clock;
  return `${moment.toLocaleDateString([], { month: "short", day: "numeric" })}, ${clock}`;
}

function alertItem(alert) {
  const { title, body } = describe(alert);
  const item = document.createElement("li");
  item.dataset.alert = String(alert.alert.id);
  const link = document.createElement("a");
  link.href = alert.url;
  const image = document.createElement("img");
  image.className = "bell-thumb";
  image.src = alert.snapshot_url;
  image.alt = "";
  image.loading = "lazy";
  // An event whose snapshot is not written yet (or none): the line alone.
  image.onerror = () => image.classList.add("missing");
  const text = document.createElement("span");
  text.className = "bell-text";
  text.textContent = `${title} · ${body}`;
  link.append(image, text);
  item.append(link);
  return item;
}
