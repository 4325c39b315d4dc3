"""Frame ingest: frames POSTed to /api/v1/actions/actions/send, in the seed's body.

Two kinds of caller send the same body:
- publishers of a `push:` camera (our webcam page, scripts): a new frame is decoded and taken
  through the camera's `cameras.pipeline.FramePipeline` like a captured frame (resize, detect,
  publish, receivers), with the sent bytes published as they are when they fit;
- the seed's player, which forwards EVERY frame it receives back here (`postFrameToBackend`).
  Those frames were already published, so they are answered from the published-frame record
  (`"duplicate": true`, with the detections) and never broadcast or counted again: any number of
  such clients cannot multiply a camera's frames, load or events.

The (camera, timestamp) claim is `cache.add`, so two identical posts racing each other, even
in different processes, publish once.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from cameras.models import Camera
from cameras.pipeline import FramePipeline
from cameras.publishing import (
    PublishedFrame,
    frame_broadcast,
    frame_record_claim,
    frame_record_get,
    frame_record_release,
    frame_remember,
)
from cameras.selectors import CameraConfig
from cameras.services import camera_status_update
from cameras.vision.frames import InvalidFrame, decode_jpeg
from cameras.vision.sources import source_kind
from organizations.permissions import Action, ActionForbidden, role_allows
from project.counters import cache_counter_incr
from project.metrics import INGEST_FRAMES
from project.unavailable import REDIS_UNAVAILABLE_ERRORS

# A timestamp is Unix milliseconds from 2000-01-01 to CAMERA_INGEST_MAX_FUTURE_SECONDS ahead of
# the server's clock: a frame dated later would record events that have not happened yet.
EARLIEST_TIMESTAMP_MS = 946_684_800_000
# How long a duplicate waits for the detections of a claim made a moment ago by another process.
CLAIM_WAIT_SECONDS = 2.0


class IngestError(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass(frozen=True)
class IngestResult:
    camera_id: str
    timestamp: int
    detections: list[dict]
    duplicate: bool

    def as_dict(self) -> dict:
        return {
            "camera_id": self.camera_id,
            "timestamp": self.timestamp,
            "detections": self.detections,
            "duplicate": self.duplicate,
        }


def ingest_outcome_count(
    *, result: IngestResult | None = None, error: Exception | None = None
) -> None:
    """Count how one ingest request ended (INGEST_FRAMES), whatever ended it."""
    if result is not None:
        outcome = "duplicate" if result.duplicate else "accepted"
    elif isinstance(error, IngestError):
        outcome = {429: "rate_limited", 503: "unavailable"}.get(error.status, "rejected")
    elif isinstance(error, REDIS_UNAVAILABLE_ERRORS):
        outcome = "unavailable"  # answered 503 (Redis is away)
    else:
        outcome = "error"
    INGEST_FRAMES.labels(outcome=outcome).inc()


def timestamp_check(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise IngestError(
            400, "timestamp must be a whole number of Unix milliseconds.", "invalid_timestamp"
        )
    now_ms = int(time.time() * 1000)
    ahead_seconds = settings.CAMERA_INGEST_MAX_FUTURE_SECONDS
    if value < EARLIEST_TIMESTAMP_MS:
        raise IngestError(
            400,
            "timestamp is not a plausible Unix time in milliseconds (it is before 2000).",
            "invalid_timestamp",
        )
    if value > now_ms + ahead_seconds * 1000:
        raise IngestError(
            400,
            f"timestamp {value} is more than {ahead_seconds:g} s ahead of the server's time "
            f"({now_ms}, {datetime.fromtimestamp(now_ms / 1000, UTC):%Y-%m-%dT%H:%M:%S.%fZ}); "
            "check the sender's clock.",
            "future_timestamp",
        )
    return value


def base64_decode(value: str) -> bytes:
    # A data URL (what canvas.toDataURL gives) is accepted as well as the bare base64.
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise IngestError(400, "frame is not valid base64.", "invalid_base64") from None


class _PushPipelines:
    """One pipeline per push: camera per process, kept between frames so that its detectors
    keep their history (motion's background); rebuilt when the camera's configuration changes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pipelines: dict[str, FramePipeline] = {}

    def get(self, config: CameraConfig) -> FramePipeline:
        with self._lock:
            pipeline = self._pipelines.get(config.public_id)
            if pipeline is None or pipeline.config != config:
                pipeline = self._pipelines[config.public_id] = FramePipeline(config)
            return pipeline


_push_pipelines = _PushPipelines()


class _IngestPublisher:
    """Ingest's way to the viewers: every new frame is published, and before the answer, so
    that a failure is answered (503 with Redis away) rather than lost."""

    def __init__(self):
        self.remembered = False

    def wants_picture(self) -> bool:
        return True

    def publish(self, frame: PublishedFrame) -> None:
        frame_remember(frame)
        self.remembered = True
        async_to_sync(frame_broadcast)(get_channel_layer(), frame)


def _duplicate(camera: Camera, timestamp: int, record: dict) -> IngestResult:
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while record.get("pending") and time.monotonic() < deadline:
        time.sleep(0.05)
        record = frame_record_get(camera.public_id, timestamp) or {}
    return IngestResult(
        camera_id=camera.public_id,
        timestamp=timestamp,
        detections=record.get("detections") or [],
        duplicate=True,
    )


def _rate_check(camera: Camera) -> None:
    key = f"camera:{camera.public_id}:ingest:{int(time.time())}"
    count = cache_counter_incr(key, timeout=5)
    if count > settings.CAMERA_INGEST_MAX_FRAMES_PER_SECOND:
        raise IngestError(
            429,
            f"At most {settings.CAMERA_INGEST_MAX_FRAMES_PER_SECOND} new frames a second "
            "per camera; slow down.",
            "rate_limited",
        )


def frame_ingest(
    *, camera: Camera, frame_b64: str, timestamp: int, role: str | None
) -> IngestResult:
    """Accept one frame for `camera` (already resolved for the caller). Runs in a worker thread
    (it decodes and detects); raises IngestError with the HTTP status and a reason.

    `role`: the caller's role in the camera's organization. A new frame needs one that may
    publish (members and up); forwarded copies of published frames are answered to every role,
    as the seed's player forwards every frame it shows, viewers' included."""
    jpeg = base64_decode(frame_b64)
    record = frame_record_get(camera.public_id, timestamp)
    if record is not None:
        return _duplicate(camera, timestamp, record)
    # Before anything about the camera's source is said: a viewer learns nothing of it here.
    if not role_allows(role, Action.PUBLISH):
        refusal = ActionForbidden(
            action=Action.PUBLISH, role=role, organization=camera.organization
        )
        raise IngestError(403, refusal.message, refusal.default_code)
    if not camera.is_push:
        raise IngestError(
            409,
            f"Camera {camera.public_id} reads its own source ({source_kind(camera.source)}); "
            "only push: cameras accept new frames. Frames it published are answered as "
            "duplicates.",
            "not_a_push_camera",
        )
    window_ms = settings.CAMERA_FRAME_RECORD_SECONDS * 1000
    if timestamp < int(time.time() * 1000) - window_ms:
        # Published frames are remembered this long: an older one cannot be told from a
        # forwarded copy, so it is refused rather than broadcast (and counted) again.
        raise IngestError(
            409,
            f"timestamp is more than {settings.CAMERA_FRAME_RECORD_SECONDS} s old; new frames "
            "need a current timestamp (check the sender's clock).",
            "stale_timestamp",
        )
    if not camera.enabled:
        raise IngestError(409, "This camera is disabled; enable it to push frames.", "disabled")
    try:
        image = decode_jpeg(jpeg)
    except InvalidFrame as exc:
        raise IngestError(400, f"frame is not a usable JPEG: {exc}.", "invalid_jpeg") from None
    _rate_check(camera)
    if not frame_record_claim(camera.public_id, timestamp):
        return _duplicate(camera, timestamp, frame_record_get(camera.public_id, timestamp) or {})
    publisher = _IngestPublisher()
    try:
        processed = _push_pipelines.get(CameraConfig.of(camera)).process(
            image, timestamp_ms=timestamp, publisher=publisher, jpeg=jpeg
        )
    except Exception:
        # Unpublished, the timestamp is free again for a retry; once remembered, the frame
        # stands as published (a failed broadcast included) and its copies are duplicates.
        if not publisher.remembered:
            frame_record_release(camera.public_id, timestamp)
        raise
    _status_report(camera)
    return IngestResult(
        camera_id=camera.public_id,
        timestamp=timestamp,
        detections=processed.detections or [],
        duplicate=False,
    )


def _status_report(camera: Camera) -> None:
    """Mark the camera online at most once a second per camera, with the frames of that second."""
    key = f"camera:{camera.public_id}:ingest-count"
    count = cache_counter_incr(key, timeout=60)
    if not cache.add(f"camera:{camera.public_id}:status-written", True, 1):
        return
    cache.set(key, 0, 60)
    camera_status_update(
        camera_pk=camera.pk,
        status=Camera.Status.ONLINE,
        last_error="",
        last_frame_at=datetime.now(UTC),
        measured_fps=float(count) if camera.status == Camera.Status.ONLINE else None,
    )
