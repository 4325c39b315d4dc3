// A camera stream's WebSocket that keeps itself connected, shared by the player and the grid's
// tiles.
//
// It never gives up while the page is visible (see reconnect.js for the policy): after a lost
// connection it retries at 1, 2, 4, 8 and 16 s, then every `steadyMs`, and at once when the
// browser comes back online or the tab becomes visible. While the tab is hidden the socket is
// closed and nothing is retried, so a hidden page costs no bandwidth.
//
// `link` says what it is doing: "connecting", "open", "reconnecting" (waiting for `retryAt`),
// "paused" (hidden tab) or "closed" (page left, or close() called); `attempt` counts the failed
// tries since the last good connection. `onChange` is called whenever they change, `onSocket`
// when a new socket starts (its first message may be the server's cached frame), `onMessage`
// with each message's data (an ArrayBuffer for binary messages). close() ends it for good (the
// grid's tile of a deleted camera).

import { retryDelay, DEFAULT_STEADY_DELAY_MS } from "./reconnect.js";

const CONNECT_TIMEOUT_MS = 10_000; // a handshake that hangs this long is given up and retried
const LONG_LIVED_MS = 5000; // a socket that stayed open this long starts the retries afresh

export class StreamSocket {
  constructor({ url, steadyMs = DEFAULT_STEADY_DELAY_MS, onMessage, onSocket, onChange }) {
    this.url = url;
    this.steadyMs = steadyMs;
    this.onMessage = onMessage;
    this.onSocket = onSocket || (() => {});
    this.onChange = onChange || (() => {});
    this.link = "connecting";
    this.attempt = 0;
    this.retryAt = 0;
    this.socket = null;
    this.retryTimer = null;
    this.openedAt = 0;
    // Aborted by close(), so that nothing brings a closed socket back.
    this.listening = new AbortController();
    const { signal } = this.listening;
    document.addEventListener(
      "visibilitychange",
      () => {
        if (document.hidden) this.disconnect("paused");
        else this.resume();
      },
      { signal },
    );
    window.addEventListener(
      "online",
      () => {
        if (!this.socket) this.resume();
      },
      { signal },
    );
    window.addEventListener("pagehide", () => this.disconnect("closed"), { signal });
    window.addEventListener(
      "pageshow",
      (event) => {
        if (event.persisted) this.connect();
      },
      { signal },
    );
  }

  close() {
    this.listening.abort();
    this.disconnect("closed");
  }

  setLink(link) {
    this.link = link;
    this.onChange();
  }

  // Try now, as after a first connection (the tab came back, the browser is online again).
  resume() {
    this.attempt = 0;
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.socket) return;
    if (document.hidden) {
      this.setLink("paused");
      return;
    }
    const ws = new WebSocket(typeof this.url === "function" ? this.url() : this.url);
    ws.binaryType = "arraybuffer";
    this.socket = ws;
    this.onSocket();
    this.setLink("connecting");
    const handshakeTimer = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(handshakeTimer);
      this.openedAt = Date.now();
      this.setLink("open");
    };
    ws.onmessage = (event) => this.onMessage(event.data);
    ws.onerror = () => {
      // onclose follows and decides what to do.
    };
    ws.onclose = () => {
      clearTimeout(handshakeTimer);
      if (this.socket !== ws) return; // closed on purpose (hidden tab, page left, reconnect)
      this.socket = null;
      if (this.openedAt && Date.now() - this.openedAt >= LONG_LIVED_MS) this.attempt = 0;
      this.openedAt = 0;
      this.scheduleRetry();
    };
  }

  disconnect(reason) {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.socket;
    this.socket = null;
    this.openedAt = 0;
    if (ws) ws.close();
    this.setLink(reason);
  }

  scheduleRetry() {
    if (document.hidden) {
      this.setLink("paused"); // visibilitychange reconnects
      return;
    }
    const delay = retryDelay(this.attempt, this.steadyMs);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setLink("reconnecting");
  }

  // Give up the open socket and connect again at once (e.g. the stream fell behind the camera).
  reconnectNow() {
    const ws = this.socket;
    this.socket = null;
    if (ws) ws.close();
    this.connect();
  }
}
