"""The one path every frame takes to its viewers, whoever produced it (capture worker or ingest).

A frame is encoded once and its two wire payloads are built once: the seed's FrameData JSON
(base64 JPEG) and our binary variant (4-byte big-endian header length, JSON header, JPEG). What
any process may need later lives in the Django cache (in memory, or Redis in production):

- `camera:<id>:latest`   the latest frame, so a viewer in any process gets it at once on connect;
- `camera:<id>:frame:<timestamp>`   the detections of every published frame for a short while,
  so ingest can answer a frame forwarded back by a seed client as a duplicate;
- `camera:<id>:watched`   set by the fan-out hubs while someone watches, so workers can skip
  JPEG encoding when nobody does;
- `camera:<id>:video:watched`   set while some process has an H.264 viewer of the camera, so
  the camera's pipeline runs its H.264 encoder only then (`cameras.video_track`);
- `camera:<id>:video:keyframe`   when a process last asked for a key frame (a viewer that can
  start only at one), in epoch milliseconds.

A frame's H.264 fragment, when the camera is encoding, travels in the same message as its JPEG
(`PublishedFrame.video`): one publish per frame, so the fragments reach each process in the
order they were encoded, or not at all (a gap the fan-out notices by the fragment's number).
"""

from __future__ import annotations

import base64
import struct
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from django.conf import settings
from django.core.cache import cache

from cameras.vision.frames import frame_data_binary, frame_data_json

# Watchers mark a camera for this long and refresh the mark well before it lapses.
WATCHED_SECONDS = 10
# The latest frame outlives a stalled source so that viewers still get the last picture.
LATEST_SECONDS = 24 * 3600
FRAME_MESSAGE_TYPE = "frame.message"
# H.264 viewers refresh their mark this often and it lapses this long after the last one left:
# the camera's encoder stops within about that long.
VIDEO_WATCHED_SECONDS = 5
VIDEO_WATCHED_REFRESH_SECONDS = 1.5


def group_name(public_id: str) -> str:
    return f"camera_{public_id}"


def _latest_key(public_id: str) -> str:
    return f"camera:{public_id}:latest"


def _record_key(public_id: str, timestamp: int) -> str:
    return f"camera:{public_id}:frame:{timestamp}"


def _watched_key(public_id: str) -> str:
    return f"camera:{public_id}:watched"


def _video_watched_key(public_id: str) -> str:
    return f"camera:{public_id}:video:watched"


def _keyframe_key(public_id: str) -> str:
    return f"camera:{public_id}:video:keyframe"


@dataclass(frozen=True, slots=True)
class VideoFragment:
    """One frame of a camera's H.264 stream, as fragmented MP4 (see `cameras.video.fmp4`)."""

    stream: str  # one run of the camera's encoder: a new run starts a new timeline
    sequence: int  # the frame's number in its stream, from 1, without gaps
    key: bool
    media_time: float  # seconds on the stream's timeline (what the browser's video reports)
    codec: str  # RFC 6381, e.g. avc1.42c01e
    width: int
    height: int
    init: bytes | None  # the stream's init segment, carried by every key frame
    data: bytes  # moof + mdat

    @classmethod
    def from_message(cls, message: dict[str, Any] | None) -> VideoFragment | None:
        return None if message is None else cls(**message)


@dataclass(frozen=True, slots=True)
class PublishedFrame:
    camera_id: str
    timestamp: int
    detections: list[dict] | None
    text: str  # the seed's FrameData JSON
    binary: bytes  # header length + JSON header + JPEG
    video: VideoFragment | None = None  # the same frame as H.264, while the camera encodes it

    @classmethod
    def build(
        cls,
        *,
        camera_id: str,
        jpeg: bytes,
        timestamp: int,
        detections: list[dict] | None,
        video: VideoFragment | None = None,
    ) -> PublishedFrame:
        return cls(
            camera_id=camera_id,
            timestamp=timestamp,
            detections=detections,
            video=video,
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
            "video": None if self.video is None else asdict(self.video),
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> PublishedFrame:
        return cls(
            camera_id=message["camera_id"],
            timestamp=message["timestamp"],
            detections=message["detections"],
            text=message["text"],
            binary=message["binary"],
            video=VideoFragment.from_message(message.get("video")),
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
    # Without its fragment: a lone H.264 frame means nothing to a viewer that joins later.
    cache.set(_latest_key(frame.camera_id), replace(frame, video=None), LATEST_SECONDS)


def latest_frame_get(public_id: str) -> PublishedFrame | None:
    return cache.get(_latest_key(public_id))


async def alatest_frame_get(public_id: str) -> PublishedFrame | None:
    return await cache.aget(_latest_key(public_id))


def camera_is_watched(public_id: str) -> bool:
    return bool(cache.get(_watched_key(public_id)))


async def acamera_mark_watched(public_id: str) -> None:
    await cache.aset(_watched_key(public_id), True, WATCHED_SECONDS)


async def acamera_mark_video_watched(public_id: str) -> None:
    await cache.aset(_video_watched_key(public_id), True, VIDEO_WATCHED_SECONDS)


async def acamera_keyframe_request(public_id: str) -> None:
    """Ask the camera's encoder, wherever it runs, for a key frame soon."""
    await cache.aset(_keyframe_key(public_id), int(time.time() * 1000), VIDEO_WATCHED_SECONDS)


def camera_video_demand(public_id: str) -> tuple[bool, int]:
    """Whether someone watches the camera as H.264, and when a key frame was last asked for
    (epoch ms, 0 for never), in one cache round trip."""
    values = cache.get_many([_video_watched_key(public_id), _keyframe_key(public_id)])
    return bool(values.get(_video_watched_key(public_id))), int(
        values.get(_keyframe_key(public_id)) or 0
    )


async def frame_broadcast(channel_layer, frame: PublishedFrame) -> None:
    await channel_layer.group_send(group_name(frame.camera_id), frame.as_message())
