"""The other ends of Sightline's notifications, for benchmarks and soaks: a webhook receiver that
checks every signature and counts deliveries, and an MQTT subscriber that counts messages.

Both listen on 127.0.0.1 only and keep counts, not bodies, so a soak of hours stays small.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.fanout import LOCALHOST

# A receiver refuses a delivery signed longer ago than this (a replay).
SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass
class WebhookTally:
    received: int = 0  # POSTs, retries included
    bad_signatures: int = 0
    duplicates: int = 0  # a delivery id seen before (sent twice)
    with_snapshot: int = 0
    by_kind: Counter = field(default_factory=Counter)
    deliveries: set[str] = field(default_factory=set)

    @property
    def distinct(self) -> int:
        return len(self.deliveries)


class WebhookReceiver:
    """A threaded HTTP server at http://127.0.0.1:<port>/hook that verifies
    `X-Sightline-Signature` with `secret` and answers 200 (401 to a bad signature)."""

    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.tally = WebhookTally()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = receiver.accept(self.headers, body)
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self._server.server_address[1]}/hook"

    def accept(self, headers, body: bytes) -> bool:
        timestamp = headers.get("X-Sightline-Timestamp", "")
        expected = hmac.new(
            self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        signed = hmac.compare_digest(f"sha256={expected}", headers.get("X-Sightline-Signature", ""))
        fresh = (
            timestamp.isdigit() and abs(time.time() - int(timestamp)) < SIGNATURE_TOLERANCE_SECONDS
        )
        delivery = headers.get("X-Sightline-Delivery", "")
        with self._lock:
            self.tally.received += 1
            if not (signed and fresh):
                self.tally.bad_signatures += 1
                return False
            if delivery in self.tally.deliveries:
                self.tally.duplicates += 1
            self.tally.deliveries.add(delivery)
            payload = json.loads(body)
            self.tally.by_kind[payload.get("type", "?")] += 1
            if (payload.get("snapshot") or {}).get("base64"):
                self.tally.with_snapshot += 1
        return True

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class MqttCounter:
    """Subscribes to `<prefix>/#` and `<discovery prefix>/#` on the broker and counts messages per
    topic kind (events, alerts, counts, snapshots, status, available, discovery)."""

    def __init__(self, *, host: str, port: int, prefix: str, discovery_prefix: str) -> None:
        import paho.mqtt.client as mqtt

        self.prefix = prefix
        self.discovery_prefix = discovery_prefix
        self.counts: Counter = Counter()
        self.available: str | None = None
        # Topics of retained state (all but events and alerts), cleared when the soak ends.
        self.state_topics: set[str] = set()
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_connect = self._connected
        self._client.on_message = self._message
        self._host, self._port = host, port

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(f"{self.prefix}/#", 0), (f"{self.discovery_prefix}/#", 0)])

    def _kind(self, topic: str) -> str:
        if topic.startswith(self.discovery_prefix + "/"):
            return "discovery"
        parts = topic[len(self.prefix) + 1 :].split("/")
        if parts[0] in {"available", "events", "alerts"}:
            return parts[0]
        if parts[-1] in {"snapshot", "status"}:
            return parts[-1]
        return "counts" if len(parts) == 2 else "other"

    def _message(self, client, userdata, message) -> None:
        kind = self._kind(message.topic)
        with self._lock:
            self.counts[kind] += 1
            if kind not in {"events", "alerts"} and message.payload:
                self.state_topics.add(message.topic)
            if kind == "available":
                self.available = message.payload.decode(errors="replace")

    def take(self) -> Counter:
        """The counts since the last take."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def __enter__(self) -> MqttCounter:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        return self

    def __exit__(self, *exc) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def clear_retained(self) -> None:
        """Remove the retained messages the run left on the broker (a shared one)."""
        for topic in sorted(self.state_topics):
            self._client.publish(topic, b"", retain=True).wait_for_publish(timeout=5)
