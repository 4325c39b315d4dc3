"""MQTT publishing against the real Mosquitto at 127.0.0.1:1883 (and ones the tests start):
availability and the last will, events through the real recorder, counts, snapshots, Home
Assistant discovery, alerts, and the queue while the broker is away."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as paho
import pytest
from prometheus_client import REGISTRY

from cameras.receivers import ProcessedFrame, frame_receivers
from cameras.selectors import CameraConfig
from cameras.services import camera_update
from notifications import mqtt
from notifications.models import AlertRule
from notifications.payloads import event_links
from tests.notifications.test_matching import T0, person, see

pytestmark = pytest.mark.django_db(transaction=True)

BROKER = ("127.0.0.1", 1883)
WAIT = 10.0


class Subscriber:
    """A paho client in the test that keeps every message it gets, in order."""

    def __init__(self, *patterns: str):
        self.messages: list[paho.MQTTMessage] = []
        self._cond = threading.Condition()
        self._patterns = patterns
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(*BROKER)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        for pattern in self._patterns:
            client.subscribe(pattern, qos=1)

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def on(self, topic: str) -> list[paho.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, payload: bytes | None = None, count: int = 1):
        """The messages on `topic` (with `payload`) once there are `count` of them."""

        def matching():
            return [
                m
                for m in self.messages
                if m.topic == topic and (payload is None or m.payload == payload)
            ]

        with self._cond:
            assert self._cond.wait_for(lambda: len(matching()) >= count, WAIT), (
                topic,
                payload,
                [(m.topic, m.payload[:40], m.retain) for m in self.messages],
            )
            return matching()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def retained(*patterns: str) -> dict[str, paho.MQTTMessage]:
    """What the broker keeps under `patterns`, as a new subscriber gets it."""
    subscriber = Subscriber(*patterns)
    time.sleep(0.5)
    subscriber.close()
    return {m.topic: m for m in subscriber.messages if m.retain}


@pytest.fixture
def prefixes(settings):
    settings.MQTT_URL = f"mqtt://{BROKER[0]}:{BROKER[1]}"
    settings.MQTT_TOPIC_PREFIX = f"test-{uuid.uuid4().hex[:10]}"
    settings.MQTT_DISCOVERY_PREFIX = f"test-ha-{uuid.uuid4().hex[:10]}"
    yield settings.MQTT_TOPIC_PREFIX, settings.MQTT_DISCOVERY_PREFIX
    # Clear every retained topic the test left on the shared broker.
    patterns = (f"{settings.MQTT_TOPIC_PREFIX}/#", f"{settings.MQTT_DISCOVERY_PREFIX}/#")
    left = retained(*patterns)
    if left:
        cleaner = paho.Client(paho.CallbackAPIVersion.VERSION2)
        cleaner.connect(*BROKER)
        cleaner.loop_start()
        for topic in left:
            cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(WAIT)
        cleaner.disconnect()
        cleaner.loop_stop()


@pytest.fixture
def bridge(prefixes):
    bridge = mqtt.start_mqtt_publisher()
    assert bridge.publisher.wait_connected(WAIT)
    yield bridge
    mqtt.stop_mqtt_publisher()


@pytest.fixture
def subscriber(prefixes):
    prefix, discovery = prefixes
    subscriber = Subscriber(f"{prefix}/#", f"{discovery}/#")
    yield subscriber
    subscriber.close()


def receiver():
    (found,) = [r for r in frame_receivers() if r.name == "mqtt"]
    return found


def frame_of(camera, detections, at_ms=T0) -> ProcessedFrame:
    image = np.zeros((120, 160, 3), np.uint8)
    return ProcessedFrame(
        camera=CameraConfig.of(camera),
        timestamp_ms=at_ms,
        width=160,
        height=120,
        detections=detections,
        jpeg=None,
        image=image,
    )


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_available_is_online_and_retained_and_offline_after_a_clean_stop(bridge, prefixes):
    prefix, _ = prefixes
    assert bridge.publisher.wait_sent(WAIT)
    kept = retained(f"{prefix}/available")
    assert kept[f"{prefix}/available"].payload == b"online"
    mqtt.stop_mqtt_publisher()
    assert retained(f"{prefix}/available")[f"{prefix}/available"].payload == b"offline"


def test_nothing_is_published_without_mqtt_url(settings):
    settings.MQTT_URL = ""
    assert mqtt.start_mqtt_publisher() is None
    assert mqtt.mqtt_bridge() is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", ("broker", 1883, False, None, None)),
        ("mqtts://u%40x:p%2Fw@broker:8884", ("broker", 8884, True, "u@x", "p/w")),
        ("mqtts://broker", ("broker", 8883, True, None, None)),
    ],
)
def test_the_broker_url(url, expected):
    broker = mqtt.Broker.of(url)
    assert (broker.host, broker.port, broker.tls, broker.username, broker.password) == expected


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "mqtt://broker:notaport"])
def test_a_broken_broker_url_is_refused(url):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        mqtt.Broker.of(url)


def test_a_person_event_is_new_then_end_with_before_and_after_and_its_snapshot(
    bridge, subscriber, prefixes, recorder, front_door
):
    prefix, _ = prefixes
    see(recorder, front_door, T0, person(7))
    recorder.flush()
    see(recorder, front_door, T0 + 400, person(7, x=40))
    recorder.flush()  # an update within a second of the last message: not told
    see(recorder, front_door, T0 + 5_000)  # gone for longer than the gap: the event ends
    recorder.flush()

    new, end = subscriber.wait_for(f"{prefix}/events", count=2)
    new, end = json.loads(new.payload), json.loads(end.payload)
    assert (new["type"], end["type"]) == ("new", "end")
    assert new["before"] == new["after"]
    after = new["after"]
    assert after["camera"] == {"id": front_door.public_id, "name": "Front door"}
    assert (after["label"], after["track_id"], after["ended_at"]) == ("person", 7, None)
    assert after["links"] == event_links(after["id"])
    assert end["before"] == new["after"]
    assert end["after"]["id"] == after["id"] and end["after"]["ended_at"] is not None
    assert not any(m.retain for m in subscriber.on(f"{prefix}/events"))

    snapshot_topic = f"{prefix}/{front_door.public_id}/person/snapshot"
    subscriber.wait_for(snapshot_topic)
    assert bridge.publisher.wait_sent(WAIT)
    kept = retained(snapshot_topic)[snapshot_topic].payload
    picture = cv2.imdecode(np.frombuffer(kept, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape[2] == 3


def test_counts_are_published_on_change_and_retained_and_status_follows_the_camera(
    bridge, subscriber, prefixes, front_door
):
    prefix, _ = prefixes
    count_topic = f"{prefix}/{front_door.public_id}/person"
    status_topic = f"{prefix}/{front_door.public_id}/status"
    two = [person(1), person(2, x=90), {"class": "person", "confidence": 0.3, "bbox": [1, 1, 5, 5]}]
    receiver().frame_processed(frame_of(front_door, two))
    subscriber.wait_for(count_topic, b"2")  # (queued values of a retained topic coalesce)
    receiver().frame_processed(frame_of(front_door, two, T0 + 100))  # no change: not told
    motion = [{"class": "motion", "confidence": 1.0, "bbox": [0, 0, 9, 9]}]
    receiver().frame_processed(frame_of(front_door, [person(2, x=90), *motion], T0 + 200))
    subscriber.wait_for(status_topic, b"online")
    subscriber.wait_for(count_topic, b"1")
    assert bridge.publisher.wait_sent(WAIT)
    # The untracked box is not counted; the announcement's initial 0 never overwrote a count.
    assert [m.payload for m in subscriber.on(count_topic)] == [b"2", b"1"]
    kept = retained(f"{prefix}/#")
    assert kept[count_topic].payload == b"1"
    assert kept[f"{prefix}/{front_door.public_id}/motion"].payload == b"1"
    assert kept[status_topic].payload == b"online"

    receiver().camera_stopped(CameraConfig.of(front_door))
    subscriber.wait_for(status_topic, b"offline")
    subscriber.wait_for(count_topic, b"0")
    assert bridge.publisher.wait_sent(WAIT)
    assert retained(status_topic)[status_topic].payload == b"offline"


def test_home_assistant_discovery_configs_name_the_topics_that_exist(
    bridge, subscriber, prefixes, front_door, back_yard
):
    prefix, discovery = prefixes
    receiver().frame_processed(frame_of(front_door, [person(1)]))
    receiver().frame_processed(frame_of(back_yard, []))
    assert bridge.publisher.wait_sent(WAIT)
    time.sleep(0.3)
    kept = retained(f"{prefix}/#", f"{discovery}/#")
    configs = {t: json.loads(m.payload) for t, m in kept.items() if t.startswith(discovery)}
    # motion and person (the default detectors) × occupancy, count and snapshot × 2 cameras
    assert len(configs) == 12
    assert len({config["unique_id"] for config in configs.values()}) == 12
    door = front_door.public_id
    occupancy = configs[f"{discovery}/binary_sensor/sightline_{door}_person_occupancy/config"]
    assert occupancy["state_topic"] == f"{prefix}/{door}/person"
    assert occupancy["device_class"] == "occupancy"
    assert occupancy["value_template"] == "{{ 'ON' if value|int > 0 else 'OFF' }}"
    assert occupancy["device"] == {
        "identifiers": [f"sightline_{door}"],
        "name": "Front door",
        "manufacturer": "Sightline",
        "model": "Camera",
    }
    assert [a["topic"] for a in occupancy["availability"]] == [
        f"{prefix}/available",
        f"{prefix}/{door}/status",
    ]
    assert occupancy["availability_mode"] == "all"
    count = configs[f"{discovery}/sensor/sightline_{door}_person_count/config"]
    assert count["state_topic"] == f"{prefix}/{door}/person"
    camera = configs[f"{discovery}/camera/sightline_{door}_person_snapshot/config"]
    assert camera["topic"] == f"{prefix}/{door}/person/snapshot"
    # Every state and availability topic a config names has a retained value already.
    for config in configs.values():
        for topic in [config.get("state_topic")] + [a["topic"] for a in config["availability"]]:
            if topic:
                assert topic in kept, topic
    assert kept[f"{prefix}/{back_yard.public_id}/person"].payload == b"0"

    # Without its person detector the camera's person entities are removed.
    camera_update(camera=front_door, detectors=["motion"])
    front_door.refresh_from_db()
    receiver().frame_processed(frame_of(front_door, []))
    assert bridge.publisher.wait_sent(WAIT)
    time.sleep(0.3)
    left = retained(f"{discovery}/#")
    assert f"{discovery}/binary_sensor/sightline_{door}_person_occupancy/config" not in left
    assert f"{discovery}/binary_sensor/sightline_{door}_motion_occupancy/config" in left


def test_a_deleted_camera_leaves_home_assistant(bridge, prefixes, front_door):
    prefix, discovery = prefixes
    receiver().frame_processed(frame_of(front_door, [person(1)]))
    assert bridge.publisher.wait_sent(WAIT)
    time.sleep(0.3)
    assert len(retained(f"{discovery}/#")) == 6
    front_door.delete()
    assert bridge.publisher.wait_sent(WAIT)
    time.sleep(0.3)
    assert retained(f"{discovery}/#", f"{prefix}/{front_door.public_id}/#") == {}


def test_an_alert_of_a_rule_with_notify_mqtt_reaches_the_alerts_topic(
    bridge, subscriber, prefixes, recorder, organization, front_door
):
    prefix, _ = prefixes
    told = AlertRule.objects.create(organization=organization, name="Door", notify_mqtt=True)
    AlertRule.objects.create(organization=organization, name="Bell only", notify_mqtt=False)
    see(recorder, front_door, T0, person(3))
    recorder.flush()
    (alert,) = subscriber.wait_for(f"{prefix}/alerts")
    body = json.loads(alert.payload)
    assert body["type"] == "alert" and body["rule"] == {"id": told.pk, "name": "Door"}
    assert body["event"]["camera"]["id"] == front_door.public_id
    assert bridge.publisher.wait_sent(WAIT)
    time.sleep(0.3)
    assert len(subscriber.on(f"{prefix}/alerts")) == 1


def test_the_last_will_says_offline_when_the_publisher_is_killed(prefixes, subscriber):
    prefix, _ = prefixes
    script = (
        "import django, time; django.setup();"
        "from notifications.mqtt import start_mqtt_publisher;"
        "bridge = start_mqtt_publisher();"
        "assert bridge.publisher.wait_connected(10);"
        "print('connected', flush=True); time.sleep(60)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_SECRET_KEY": "test-only-secret-key",
        "MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "MQTT_TOPIC_PREFIX": prefix,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline().strip() == b"connected"
        subscriber.wait_for(f"{prefix}/available", b"online")
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        subscriber.wait_for(f"{prefix}/available", b"offline")
    finally:
        child.kill()
        child.wait(WAIT)
    assert retained(f"{prefix}/available")[f"{prefix}/available"].payload == b"offline"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gate:
    """A TCP relay to the real broker that the test opens and closes: closed, the broker is
    away for whoever connects through it (nothing listens on its port), while the test's own
    subscriber, connected to the broker directly, hears everything."""

    def __init__(self):
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def open(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                near, _ = listener.accept()
            except OSError:
                return  # closed
            far = socket.create_connection(BROKER)
            self._sockets += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._listener.close()
        for end in self._sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()
        self._sockets = []


def test_messages_wait_while_the_broker_is_away_and_the_oldest_are_dropped_past_the_bound(
    prefixes, subscriber, caplog
):
    prefix, _ = prefixes
    gate = Gate()
    gate.open()
    publisher = mqtt.MqttPublisher(f"mqtt://127.0.0.1:{gate.port}", queue_max=5)
    caplog.set_level(logging.INFO, logger="notifications.mqtt")
    publisher.start()
    try:
        assert publisher.wait_connected(WAIT)
        publisher.publish(f"{prefix}/alerts", b"0")
        subscriber.wait_for(f"{prefix}/alerts", b"0")

        gate.close()
        deadline = time.monotonic() + WAIT
        while publisher.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not publisher.connected
        # The broker saw the connection drop: the last will tells Home Assistant.
        subscriber.wait_for(f"{prefix}/available", b"offline")
        dropped = counter("sightline_mqtt_dropped_total", reason="queue_full")
        for number in range(1, 9):
            publisher.publish(f"{prefix}/alerts", str(number).encode())
            # A retained state topic keeps only its latest value in the queue.
            publisher.publish(f"{prefix}/cam/person", str(number).encode(), retain=True)
        assert publisher.queued() == 5
        # 16 messages, one topic's 7 older values coalesced: 9 left, the 4 oldest dropped.
        assert counter("sightline_mqtt_dropped_total", reason="queue_full") == dropped + 4
        assert REGISTRY.get_sample_value("sightline_mqtt_queue_depth") == 5
        time.sleep(2.5)  # a few reconnection attempts: the outage is logged once
        away = [r for r in caplog.records if "is away" in r.getMessage()]
        assert len(away) == 1 and away[0].levelno == logging.WARNING

        gate.open()
        assert publisher.wait_connected(WAIT * 2)
        assert publisher.wait_sent(WAIT)
        subscriber.wait_for(f"{prefix}/alerts", b"8")
        assert [m.payload for m in subscriber.on(f"{prefix}/alerts")] == [
            b"0",
            b"5",
            b"6",
            b"7",
            b"8",
        ]
        assert subscriber.wait_for(f"{prefix}/cam/person")[-1].payload == b"8"
        subscriber.wait_for(f"{prefix}/available", b"online", count=2)
        back = [r for r in caplog.records if "is back after" in r.getMessage()]
        assert len(back) == 1 and back[0].levelno == logging.INFO
    finally:
        publisher.stop(timeout=2)
        gate.close()
