"""MQTT publishing with Home Assistant discovery (README, "MQTT and Home Assistant").

With MQTT_URL set, each process that records (daphne with CAMERAS_IN_PROCESS, or `runcameras`)
runs one `MqttPublisher`: a paho client with its own client id, a last will of `offline` on
`<prefix>/available` and `online` there on every connection, reconnecting with backoff.

Nothing waits for the broker. Frame threads, the recorder's flusher and request threads only
put messages in the publisher's queue, kept in our own code and bounded by MQTT_QUEUE_MAX:
while the broker is away the messages wait there, in order; past the bound the oldest are
dropped and counted (sightline_mqtt_dropped_total). A retained state topic (a count, a status,
a snapshot, a discovery config) keeps only its latest message in the queue, since only the
latest matters. The publisher's thread hands messages to paho at QoS 1, at most MAX_UNACKED at
a time, so what is in flight when the connection drops is paho's to resend and everything else
is still ours. Every retained topic's latest value is remembered and published again on each
connection, so a broker restarted without persistence gets its state (and discovery) back.

What is published (topics in notifications/mqtt_topics.py):
- `MqttFrameReceiver` (a frame receiver): per camera, `status` online on its frames and offline
  when it stops; the count of tracked objects per class on change; and its Home Assistant
  discovery, announced by the publisher's thread (it looks up the camera's name) the first
  time a camera is seen or when its detectors change.
- `mqtt_events_recorded` (events.signals.events_recorded, in the recorder's transaction): on
  commit, `events` new|update|end with before/after, and each class's latest snapshot.
- `mqtt_alerts_raised` (notifications.services.alerts_raised): the alerts of rules with
  notify_mqtt on `alerts`.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.db import close_old_connections, transaction

from cameras.receivers import ProcessedFrame
from cameras.selectors import CameraConfig
from notifications import mqtt_topics as topics
from notifications.payloads import event_body
from project.contained import ContainedFailures
from project.metrics import MQTT_CONNECTED, MQTT_DROPPED, MQTT_PUBLISHED, MQTT_QUEUE_DEPTH

logger = logging.getLogger(__name__)

# Messages handed to paho and not yet acknowledged by the broker: bounded so that what waits
# for the broker stays in our queue, where the bound and the drops are ours.
MAX_UNACKED = 20
# An open event's update is published at most about once a second (zones entered are always
# told): a little under the recorder's default flush period, so each of its flushes is told.
UPDATE_SECONDS = 0.9
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 60
# A camera announcement that failed (the database was away) is tried again after this long.
TASK_RETRY_SECONDS = 5.0
# Open events remembered for their `before` (an event whose end was never seen is forgotten).
MAX_OPEN_EVENTS = 10_000

Payload = bytes | Callable[[], bytes | None]


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def of(cls, url: str) -> Broker:
        """`mqtt://user:pass@host:port` (port 1883 by default) or `mqtts://…` (TLS, 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ImproperlyConfigured(
                "MQTT_URL must look like mqtt://user:password@host:1883 or mqtts://host:8883"
            )
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ImproperlyConfigured("MQTT_URL has an invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


@dataclass(slots=True)
class Message:
    topic: str
    payload: Payload  # or a callable, read in the publisher's thread (a snapshot's bytes)
    retain: bool


def _client_id() -> str:
    # Unique per process, so two recording processes never take over each other's session.
    return f"sightline-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class MqttPublisher:
    """One client and its queue. `publish` may be called from any thread and never blocks
    on the network; `start` and `stop` belong to the process that owns it."""

    def __init__(self, url: str, *, queue_max: int):
        self.broker = Broker.of(url)
        self.client_id = _client_id()
        self.queue_max = queue_max
        self._cond = threading.Condition()
        self._queue: OrderedDict[object, Message] = OrderedDict()
        self._retained: dict[str, Message] = {}
        self._sequence = itertools.count()
        self._tasks: list[Callable[[], None]] = []
        self._tasks_after = 0.0  # monotonic time before which failed tasks are not retried
        self._connected = False
        self._unacked = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        where = f"{self.broker.host}:{self.broker.port}"
        self._broker_failures = ContainedFailures(
            what=f"The MQTT broker at {where}",
            logger=logger,
            failed_message="%(what)s is away (%(error)s); messages wait in the queue, "
            "reconnecting with backoff (logged again when it is back)",
            recovered_message="%(what)s is back after %(seconds).0f s; sending what waited",
        )
        self._task_failures = ContainedFailures(
            what="Announcing a camera to Home Assistant over MQTT", logger=logger
        )
        self._send_failures = ContainedFailures(
            what="Publishing an MQTT message",
            logger=logger,
            failed_level=logging.ERROR,
            count=MQTT_DROPPED.labels(reason="unsendable").inc,
        )
        for reason in ("queue_full", "unsendable"):  # exported as 0 from the start
            MQTT_DROPPED.labels(reason=reason)
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True
        )
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set()
        client.will_set(topics.available_topic(), "offline", qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    # --- any thread ------------------------------------------------------------------------
    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        """Queue a message (an empty retained payload clears the topic on the broker)."""
        message = Message(topic, payload, retain)
        with self._cond:
            if retain:
                key: object = ("retained", topic)
                self._queue.pop(key, None)
                if payload == b"":
                    self._retained.pop(topic, None)
                else:
                    self._retained[topic] = message
            else:
                key = ("message", next(self._sequence))
            self._queue[key] = message
            self._trim()
            self._cond.notify()

    def publish_if_unset(self, topic: str, payload: bytes) -> None:
        """Publish a retained initial value unless the topic already has one of ours."""
        with self._cond:
            if topic in self._retained:
                return
            self.publish(topic, payload, retain=True)

    def run_soon(self, task: Callable[[], None]) -> None:
        """Run `task` in the publisher's thread (work that may touch the database); a task
        that raises is logged once and run again later."""
        with self._cond:
            self._tasks.append(task)
            self._cond.notify()

    @property
    def connected(self) -> bool:
        return self._connected

    def queued(self) -> int:
        return len(self._queue)

    def wait_connected(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def wait_sent(self, timeout: float) -> bool:
        """Wait until nothing is queued or unacknowledged (tests, and a clean stop)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue and not self._unacked and not self._tasks, timeout
            )

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        logger.info(
            "Publishing to MQTT at %s:%s as %s (topics under %s/)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            topics.prefix(),
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Say `offline` (a clean disconnect sends no last will), send what is queued while
        the broker is there, then close."""
        self.publish(topics.available_topic(), b"offline", retain=True)
        if self._connected:
            self.wait_sent(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._client.disconnect()
        self._client.loop_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        MQTT_CONNECTED.set(0)

    # --- the publisher's thread ------------------------------------------------------------
    def _ready(self) -> bool:
        if self._stopping:
            return True
        if self._tasks and time.monotonic() >= self._tasks_after:
            return True
        return self._connected and bool(self._queue) and self._unacked < MAX_UNACKED

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._ready, timeout=1.0)
                if self._stopping:
                    return
                tasks: list[Callable[[], None]] = []
                message = None
                if self._tasks and time.monotonic() >= self._tasks_after:
                    tasks, self._tasks = self._tasks, []
                elif self._connected and self._queue and self._unacked < MAX_UNACKED:
                    _, message = self._queue.popitem(last=False)
                    self._unacked += 1
                    MQTT_QUEUE_DEPTH.set(len(self._queue))
            if tasks:
                self._run_tasks(tasks)
            elif message is not None:
                self._send(message)

    def _run_tasks(self, tasks: list[Callable[[], None]]) -> None:
        for index, task in enumerate(tasks):
            try:
                task()
            except Exception as error:
                self._task_failures.failed(error)
                with self._cond:
                    self._tasks[:0] = tasks[index:]
                    self._tasks_after = time.monotonic() + TASK_RETRY_SECONDS
                return
            finally:
                close_old_connections()  # this thread lives long: never keep a broken one
            self._task_failures.succeeded()

    def _send(self, message: Message) -> None:
        sent = False
        with self._send_failures:
            payload = message.payload() if callable(message.payload) else message.payload
            if payload is not None:
                self._client.publish(message.topic, payload, qos=1, retain=message.retain)
                sent = True
        if not sent:
            with self._cond:
                self._unacked -= 1
                self._cond.notify_all()

    def _trim(self) -> None:
        while len(self._queue) > self.queue_max:
            self._queue.popitem(last=False)
            MQTT_DROPPED.labels(reason="queue_full").inc()
        MQTT_QUEUE_DEPTH.set(len(self._queue))

    # --- paho's network thread -------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._broker_failures.failed(ConnectionError(f"refused: {reason_code}"))
            return
        self._broker_failures.succeeded()
        with self._cond:
            self._connected = True
            # `online` first, then every retained topic's latest value, ahead of the rest.
            front = [Message(topics.available_topic(), b"online", True)]
            front += [m for t, m in self._retained.items() if t != topics.available_topic()]
            for message in reversed(front):
                key = ("retained", message.topic)
                self._queue[key] = message
                self._queue.move_to_end(key, last=False)
            self._retained[topics.available_topic()] = front[0]
            # Not trimmed: what was just put in front goes first, and is sent right away.
            MQTT_QUEUE_DEPTH.set(len(self._queue))
            self._cond.notify_all()
        MQTT_CONNECTED.set(1)

    def _on_connect_fail(self, client, userdata) -> None:
        self._broker_failures.failed(ConnectionError("cannot connect"))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            stopping = self._stopping
            self._cond.notify_all()
        MQTT_CONNECTED.set(0)
        if was_connected and not stopping:
            self._broker_failures.failed(ConnectionError(f"disconnected: {reason_code}"))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        MQTT_PUBLISHED.inc()
        with self._cond:
            self._unacked = max(self._unacked - 1, 0)
            self._cond.notify_all()


# --- what Sightline tells --------------------------------------------------------------------
@dataclass
class _CameraSeen:
    public_id: str
    detectors_key: tuple
    counts: dict[str, int] = field(default_factory=dict)


class MqttBridge:
    """Sightline's state as told over MQTT by one publisher: cameras seen, their counts,
    the open events' last message and each class's snapshot."""

    def __init__(self, publisher: MqttPublisher):
        self.publisher = publisher
        self._lock = threading.Lock()
        self._cameras: dict[int, _CameraSeen] = {}
        self._announced: dict[int, tuple[str, ...]] = {}  # camera pk: classes (publisher thread)
        self._open_events: OrderedDict[int, tuple[dict[str, Any], float]] = OrderedDict()
        self._snapshots: dict[str, str] = {}  # snapshot topic: storage name published

    # Frame threads: in-memory work and queueing only.
    def frame_processed(self, frame: ProcessedFrame) -> None:
        camera = frame.camera
        detectors_key = (camera.detectors, camera.onnx_labels)
        counts = topics.frame_counts(frame.detections) if frame.detections is not None else {}
        with self._lock:
            seen = self._cameras.get(camera.pk)
            first = seen is None or seen.detectors_key != detectors_key
            if first:
                seen = self._cameras[camera.pk] = _CameraSeen(camera.public_id, detectors_key)
            changed = {
                label: counts.get(label, 0)
                for label in seen.counts.keys() | counts.keys()
                if counts.get(label, 0) != seen.counts.get(label)
            }
            seen.counts.update(changed)
        for label, count in changed.items():
            self.publisher.publish(
                topics.count_topic(camera.public_id, label), str(count).encode(), retain=True
            )
        if first:  # after the counts, so the announcement's initial zeros never hide them
            self.publisher.publish(topics.status_topic(camera.public_id), b"online", retain=True)
            self.publisher.run_soon(partial(self._announce, camera))

    def camera_stopped(self, camera: CameraConfig) -> None:
        with self._lock:
            seen = self._cameras.pop(camera.pk, None)
        self.publisher.publish(topics.status_topic(camera.public_id), b"offline", retain=True)
        for label, count in (seen.counts if seen else {}).items():
            if count:  # nobody is tracked on a stopped camera
                self.publisher.publish(
                    topics.count_topic(camera.public_id, label), b"0", retain=True
                )

    # The publisher's thread.
    def _announce(self, camera: CameraConfig) -> None:
        from cameras.models import Camera

        name = Camera.objects.filter(pk=camera.pk).values_list("name", flat=True).first()
        if name is None:
            return  # deleted since
        classes = topics.camera_classes(camera.detectors, camera.onnx_labels)
        gone = [label for label in self._announced.get(camera.pk, ()) if label not in classes]
        for topic in topics.discovery_topics(camera.public_id, gone):
            self.publisher.publish(topic, b"", retain=True)
        for topic, config in topics.discovery_configs(
            camera_public_id=camera.public_id, camera_name=name, classes=classes
        ):
            self.publisher.publish(topic, config, retain=True)
        for label in classes:  # a state from the start rather than "unknown"
            self.publisher.publish_if_unset(topics.count_topic(camera.public_id, label), b"0")
        self._announced[camera.pk] = classes

    def camera_deleted(self, *, public_id: str, detectors: list[str], onnx_labels: str) -> None:
        """Remove a deleted camera's entities from Home Assistant and its retained state."""
        classes = topics.camera_classes(detectors, onnx_labels)
        for topic in topics.discovery_topics(public_id, classes):
            self.publisher.publish(topic, b"", retain=True)
        for label in classes:
            self.publisher.publish(topics.count_topic(public_id, label), b"", retain=True)
            self.publisher.publish(topics.snapshot_topic(public_id, label), b"", retain=True)
        self.publisher.publish(topics.status_topic(public_id), b"", retain=True)

    # The recorder's flusher thread, once its transaction committed.
    def events_committed(self, camera_public_id: str, events: list[tuple[Any, dict]]) -> None:
        now = time.monotonic()
        for event, body in events:
            with self._lock:
                previous = self._open_events.get(event.pk)
                if event.ended_at is not None:
                    kind = "end"
                    self._open_events.pop(event.pk, None)
                else:
                    kind = "new" if event.created or previous is None else "update"
                    if (
                        kind == "update"
                        and now - previous[1] < UPDATE_SECONDS
                        and previous[0]["zones"] == body["zones"]
                    ):
                        kind = None
                    else:
                        self._open_events[event.pk] = (body, now)
                        self._open_events.move_to_end(event.pk)
                        while len(self._open_events) > MAX_OPEN_EVENTS:
                            self._open_events.popitem(last=False)
                snapshot_topic = topics.snapshot_topic(camera_public_id, event.label)
                snapshot_changed = bool(event.snapshot) and (
                    self._snapshots.get(snapshot_topic) != event.snapshot
                )
                if snapshot_changed:
                    self._snapshots[snapshot_topic] = event.snapshot
            if kind is not None:
                before = previous[0] if previous is not None else body
                self.publisher.publish(
                    topics.events_topic(), topics.event_message(kind, before, body)
                )
            if snapshot_changed:
                self.publisher.publish(
                    snapshot_topic, partial(_snapshot_bytes, event.snapshot), retain=True
                )

    def alerts(self, alerts: list) -> None:
        for alert in alerts:
            if alert.notify_mqtt:
                self.publisher.publish(topics.alerts_topic(), _json(alert.body))


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _snapshot_bytes(name: str) -> bytes | None:
    try:
        with default_storage.open(name, "rb") as file:
            return file.read()
    except OSError:
        logger.warning("Could not read the snapshot %s for MQTT", name, exc_info=True)
        return None


# --- this process's bridge -------------------------------------------------------------------
_bridge: MqttBridge | None = None
_bridge_lock = threading.Lock()


def mqtt_bridge() -> MqttBridge | None:
    """This process's bridge while it publishes (None without MQTT_URL, or in a process that
    does not record)."""
    return _bridge


def start_mqtt_publisher() -> MqttBridge | None:
    """Start publishing from this process, once (nothing without MQTT_URL)."""
    global _bridge
    if not settings.MQTT_URL:
        return None
    with _bridge_lock:
        if _bridge is None:
            publisher = MqttPublisher(settings.MQTT_URL, queue_max=settings.MQTT_QUEUE_MAX)
            _bridge = MqttBridge(publisher)
            publisher.start()
            # A clean exit (SIGTERM to daphne) says offline; a crash leaves it to the will.
            atexit.unregister(stop_mqtt_publisher)
            atexit.register(stop_mqtt_publisher)
        return _bridge


def stop_mqtt_publisher() -> None:
    global _bridge
    with _bridge_lock:
        bridge, _bridge = _bridge, None
    if bridge is not None:
        bridge.publisher.stop()


# --- receivers (connected in notifications/apps.py) -------------------------------------------
class MqttFrameReceiver:
    name = "mqtt"

    def frame_processed(self, frame: ProcessedFrame) -> None:
        bridge = _bridge
        if bridge is not None:
            bridge.frame_processed(frame)

    def camera_stopped(self, camera: CameraConfig) -> None:
        bridge = _bridge
        if bridge is not None:
            bridge.camera_stopped(camera)


_event_failures = ContainedFailures(
    what="Preparing the MQTT messages of recorded events", logger=logger
)


def mqtt_events_recorded(sender, *, camera_pk, camera_public_id, events, **kwargs) -> None:
    """Inside the recorder's transaction: build the events' messages, publish them on commit."""
    bridge = _bridge
    if bridge is None:
        return
    from cameras.models import Camera

    with _event_failures:
        with transaction.atomic():  # a failed query must not break the recorder's transaction
            name = Camera.objects.filter(pk=camera_pk).values_list("name", flat=True).first()
        messages = [
            (
                event,
                event_body(
                    event_pk=event.pk,
                    camera_public_id=camera_public_id,
                    camera_name=name or camera_public_id,
                    label=event.label,
                    track_id=event.track_id,
                    zones=list(event.zones),
                    started_at=event.started_at,
                    last_seen_at=event.last_seen_at,
                    ended_at=event.ended_at,
                    peak_confidence=event.peak_confidence,
                ),
            )
            for event in events
        ]
        transaction.on_commit(partial(bridge.events_committed, camera_public_id, messages))


def mqtt_alerts_raised(sender, *, alerts, **kwargs) -> None:
    bridge = _bridge
    if bridge is not None:
        bridge.alerts(alerts)


def mqtt_camera_deleted(sender, *, instance, **kwargs) -> None:
    bridge = _bridge
    if bridge is not None:
        transaction.on_commit(
            partial(
                bridge.camera_deleted,
                public_id=instance.public_id,
                detectors=list(instance.detectors or ()),
                onnx_labels=instance.onnx_labels or "",
            )
        )
