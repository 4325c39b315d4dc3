"""What Sightline publishes over MQTT: topic names and payloads, free of any client (README,
"MQTT and Home Assistant").

`<prefix>` is MQTT_TOPIC_PREFIX and `<camera>` a camera's public id: twelve lowercase letters
and digits, so it never holds a `/`, `+` or `#`. Class names come from detectors (ONNX label
files may say "traffic light"), so they are made topic-safe with `topic_part`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.urls import reverse

from notifications.payloads import absolute_url

# A detector whose boxes are not tracked objects: counted box by box.
UNTRACKED_CLASSES = frozenset({"motion"})

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def topic_part(name: str) -> str:
    """`name` as one topic level: letters, digits, `_` and `-` only."""
    return _UNSAFE.sub("_", name.strip()) or "_"


def prefix() -> str:
    return settings.MQTT_TOPIC_PREFIX


def available_topic() -> str:
    return f"{prefix()}/available"


def events_topic() -> str:
    return f"{prefix()}/events"


def alerts_topic() -> str:
    return f"{prefix()}/alerts"


def status_topic(camera_public_id: str) -> str:
    return f"{prefix()}/{camera_public_id}/status"


def count_topic(camera_public_id: str, label: str) -> str:
    return f"{prefix()}/{camera_public_id}/{topic_part(label)}"


def snapshot_topic(camera_public_id: str, label: str) -> str:
    return f"{count_topic(camera_public_id, label)}/snapshot"


def camera_classes(detectors: Iterable[str], onnx_labels: str = "") -> tuple[str, ...]:
    """The classes a camera's detectors can report, in order: `person` for the person detector,
    `motion` for motion, `face` for faces, the labels file's for an ONNX model."""
    classes: list[str] = []
    for name in detectors:
        if name != "onnx":
            classes.append(name)
        elif onnx_labels:
            # Imported here: the labels reader lives with OpenCV's detectors.
            from cameras.vision.detectors import DetectorConfigError, load_labels

            try:
                classes.extend(load_labels(onnx_labels))
            except DetectorConfigError:
                pass  # the camera cannot run its model either; its other classes still count
    return tuple(dict.fromkeys(classes))


def frame_counts(detections: Iterable[dict]) -> dict[str, int]:
    """Objects in view per class: tracked detections (those with a `track_id`), and motion
    boxes, which are never tracked."""
    counts: dict[str, int] = {}
    for detection in detections:
        label = detection.get("class")
        if label and ("track_id" in detection or label in UNTRACKED_CLASSES):
            counts[label] = counts.get(label, 0) + 1
    return counts


def event_message(kind: str, before: dict[str, Any], after: dict[str, Any]) -> bytes:
    """`<prefix>/events`: `type` new|update|end and the event `before` and `after` this change,
    as Frigate's `frigate/events` (for a new event both are the same)."""
    return json.dumps({"type": kind, "before": before, "after": after}).encode()


def _unique_id(camera_public_id: str, label: str, kind: str) -> str:
    return f"sightline_{camera_public_id}_{topic_part(label)}_{kind}"


def _config_topic(component: str, unique_id: str) -> str:
    return f"{settings.MQTT_DISCOVERY_PREFIX}/{component}/{unique_id}/config"


def discovery_topics(camera_public_id: str, classes: Iterable[str]) -> list[str]:
    """The config topics of a camera's entities (an empty retained message on each removes
    them from Home Assistant)."""
    return [
        _config_topic(component, _unique_id(camera_public_id, label, kind))
        for label in classes
        for component, kind in _ENTITIES
    ]


_ENTITIES = (("binary_sensor", "occupancy"), ("sensor", "count"), ("camera", "snapshot"))


def discovery_configs(
    *, camera_public_id: str, camera_name: str, classes: Iterable[str]
) -> list[tuple[str, bytes]]:
    """Home Assistant MQTT discovery: per class, an occupancy binary sensor and a count sensor
    from the count topic, and a camera entity from the snapshot topic, all on one device per
    camera and available while both Sightline and the camera are online."""
    device = {
        "identifiers": [f"sightline_{camera_public_id}"],
        "name": camera_name,
        "manufacturer": "Sightline",
        "model": "Camera",
    }
    if settings.PUBLIC_URL:
        device["configuration_url"] = absolute_url(reverse("camera", args=[camera_public_id]))
    availability = {
        "availability": [
            {"topic": available_topic()},
            {"topic": status_topic(camera_public_id)},
        ],
        "availability_mode": "all",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    configs = []
    for label in classes:
        title = label.replace("_", " ").capitalize()
        entities = {
            "occupancy": {
                "name": f"{title} occupancy",
                "state_topic": count_topic(camera_public_id, label),
                "value_template": "{{ 'ON' if value|int > 0 else 'OFF' }}",
                "device_class": "occupancy",
            },
            "count": {
                "name": f"{title} count",
                "state_topic": count_topic(camera_public_id, label),
                "state_class": "measurement",
                "icon": "mdi:counter",
            },
            "snapshot": {
                "name": f"{title} snapshot",
                "topic": snapshot_topic(camera_public_id, label),
            },
        }
        for component, kind in _ENTITIES:
            unique_id = _unique_id(camera_public_id, label, kind)
            config = {
                **entities[kind],
                "unique_id": unique_id,
                "device": device,
                **availability,
            }
            configs.append((_config_topic(component, unique_id), json.dumps(config).encode()))
    return configs
