"""The one path every frame takes to its viewers, whoever produced it (capture worker or ingest).

A frame is encoded once and its two wire payloads are built once: the seed's FrameData JSON
(base64 JPEG) and our binary variant (4-byte big-endian header length, JSON header, JPEG). What
any process may need later lives in the Django cache (in memory, or Redis in production):

- `camera:<id>:latest`   the latest frame, so a viewer in any process gets it at once on connect;
- `camera:<id>:frame:<timestamp>`   the detections of every published frame for a short while,
  so ingest can answer a frame forwarded back by a seed client as a duplicate;
- `camera:<id>:watched`   set by the fan-out hubs while someone watches, so workers can skip
  JPEG encoding when nobody does.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from cameras.vision.frames import frame_data_binary, frame_data_json

# Watchers mark a camera for this long and refresh the mark well before it lapses.
WATCHED_SECONDS = 10
# The latest frame outlives a stalled source so that viewers still get the last picture.
LATEST_SECONDS = 24 * 3600
FRAME_MESSAGE_TYPE = "frame.message"


def group_name(public_id: str) -> str:
    return f"camera_{public_id}"


def _latest_key(public_id: str) -> str:
    return f"camera:{public_id}:latest"


def _record_key(public_id: str, timestamp: int) -> str:
    return f"camera:{public_id}:frame:{timestamp}"


def _watched_key(public_id: str) -> str:
    return f"camera:{public_id}:watched"


@dataclass(frozen=True, slots=True)
class PublishedFrame:
    camera_id: str
    timestamp: int
    detections: list[dict] | None
    text: str  # the seed's FrameData JSON
    binary: bytes  # header length + JSON header + JPEG

    @classmethod
    def build(
        cls, *, camera_id: str, jpeg: bytes, timestamp: int, detections: list[dict] | None
    ) -> PublishedFrame:
        return cls(
            camera_id=camera_id,
            timestamp=timestamp,
            detections=detections,
            text=frame_data_json(
                frame_b64=base64.b64encode(jpeg).decode("ascii"),
                timestamp_ms=timestamp,
                camera_id=camera_id,
                detections=detections,
            ),
            binary=frame_data_binary(
                jpeg=jpeg, timestamp_ms=timestamp, camera_id=camera_id, detections=detections
            ),
        )

    @property
    def jpeg(self) -> bytes:
        (header_length,) = struct.unpack_from(">I", self.binary)
        return self.binary[4 + header_length :]

    def as_message(self) -> dict[str, Any]:
        return {
            "type": FRAME_MESSAGE_TYPE,
            "camera_id": self.camera_id,
            "timestamp": self.timestamp,
            "detections": self.detections,
            "text": self.text,
            "binary": self.binary,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> PublishedFrame:
        return cls(
            camera_id=message["camera_id"],
            timestamp=message["timestamp"],
            detections=message["detections"],
            text=message["text"],
            binary=message["binary"],
        )


def frame_record_set(frame: PublishedFrame) -> None:
    """Remember a published frame's detections, for ingest idempotency."""
    cache.set(
        _record_key(frame.camera_id, frame.timestamp),
        {"detections": frame.detections},
        settings.CAMERA_FRAME_RECORD_SECONDS,
    )


def frame_remember(frame: PublishedFrame) -> None:
    """Record a frame's detections and keep it as the camera's latest."""
    frame_record_set(frame)
    latest_frame_set(frame)


def frame_record_get(public_id: str, timestamp: int) -> dict | None:
    return cache.get(_record_key(public_id, timestamp))


def frame_record_claim(public_id: str, timestamp: int) -> bool:
    """Claim a timestamp for a new frame; False when it is taken (published or being published).

    `cache.add` is atomic in every backend we use, so two concurrent identical posts, even in
    different processes, publish once.
    """
    return cache.add(
        _record_key(public_id, timestamp), {"pending": True}, settings.CAMERA_FRAME_RECORD_SECONDS
    )


def frame_record_release(public_id: str, timestamp: int) -> None:
    cache.delete(_record_key(public_id, timestamp))


def latest_frame_set(frame: PublishedFrame) -> None:
    cache.set(_latest_key(frame.camera_id), frame, LATEST_SECONDS)


def latest_frame_get(public_id: str) -> PublishedFrame | None:
    return cache.get(_latest_key(public_id))


async def alatest_frame_get(public_id: str) -> PublishedFrame | None:
    return await cache.aget(_latest_key(public_id))


def camera_is_watched(public_id: str) -> bool:
    return bool(cache.get(_watched_key(public_id)))


async def acamera_mark_watched(public_id: str) -> None:
    await cache.aset(_watched_key(public_id), True, WATCHED_SECONDS)


async def frame_broadcast(channel_layer, frame: PublishedFrame) -> None:
    await channel_layer.group_send(group_name(frame.camera_id), frame.as_message())
