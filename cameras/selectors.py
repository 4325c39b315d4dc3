"""Reads about cameras. `cameras_for_user` is the one place camera isolation is decided:
pages, the API, frame ingest and the WebSocket consumer all go through it.

A camera's health (for people: the pages and the API) is read from the heartbeats its capture
worker and the events recorder leave in the cache, for all cameras of a page in one read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import OuterRef, QuerySet, Subquery

from cameras.models import Camera
from cameras.source_policy import source_masked
from cameras.zones import Polygon, polygons_of
from organizations.models import Membership
from organizations.permissions import Action, role_allows
from organizations.selectors import organizations_for_user
from project.contained import ContainedFailures
from project.heartbeats import heartbeats_read

logger = logging.getLogger(__name__)

# Heartbeat names: the supervisor's, each camera's worker's, and the events recorder's.
SUPERVISOR_HEARTBEAT = "capture"
RECORDER_HEARTBEAT = "recorder"


def supervisor_heartbeat_ttl(reload_seconds: float | None = None) -> float:
    """How long the capture supervisor's heartbeat lives, and so how long it may stay quiet.

    It beats at least once a reload (`CAMERA_RELOAD_SECONDS` unless given): three missed
    reloads and a few seconds' margin mean no supervisor runs.
    """
    if reload_seconds is None:
        reload_seconds = settings.CAMERA_RELOAD_SECONDS
    return 3 * reload_seconds + 5


def capture_heartbeat_name(public_id: str) -> str:
    return f"capture:{public_id}"


def recorder_heartbeat_name(public_id: str) -> str:
    return f"recorder:{public_id}"


def cameras_for_user(*, user: AbstractBaseUser | AnonymousUser | None) -> QuerySet[Camera]:
    if user is None or not user.is_authenticated:
        return Camera.objects.none()
    return Camera.objects.filter(organization__in=organizations_for_user(user=user))


def camera_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser | None, public_id: str
) -> Camera | None:
    """The camera, if the user may see it, with `member_role`: the user's role in its
    organization (read in the same query, for `organizations.permissions.role_allows`)."""
    if user is None or not user.is_authenticated:
        return None
    role = Membership.objects.filter(organization=OuterRef("organization"), user=user)
    return (
        cameras_for_user(user=user)
        .select_related("organization")
        .annotate(member_role=Subquery(role.values("role")[:1]))
        .filter(public_id=public_id)
        .first()
    )


def camera_source_for_role(camera: Camera, role: str | None) -> str:
    """The camera's source with its credentials for admins and owners, masked for the rest."""
    if role_allows(role, Action.SEE_CAMERA_SECRETS):
        return camera.source
    return source_masked(camera.source)


@dataclass(frozen=True)
class CameraConfig:
    """What a capture worker needs, detached from the ORM so it can live in a thread.

    Two configs compare equal exactly when a running worker can keep going unchanged.
    """

    pk: int
    public_id: str
    organization_pk: int
    source: str
    target_fps: int
    max_width: int
    jpeg_quality: int
    detectors: tuple[str, ...]
    min_confidence: float
    onnx_model: str
    onnx_labels: str
    zones: tuple[Polygon, ...] = ()
    motion_masks: tuple[Polygon, ...] = ()

    @classmethod
    def of(cls, camera: Camera) -> CameraConfig:
        return cls(
            pk=camera.pk,
            public_id=camera.public_id,
            organization_pk=camera.organization_id,
            source=camera.source,
            target_fps=camera.target_fps,
            max_width=camera.max_width,
            jpeg_quality=camera.jpeg_quality,
            detectors=tuple(camera.detectors or ()),
            min_confidence=camera.min_confidence,
            onnx_model=camera.onnx_model,
            onnx_labels=camera.onnx_labels,
            zones=polygons_of(camera.zones or []),
            motion_masks=polygons_of(camera.motion_masks or []),
        )

    @property
    def is_push(self) -> bool:
        return self.source.strip().lower().startswith("push:")


def camera_configs_enabled(*, public_ids: list[str] | None = None) -> list[CameraConfig]:
    cameras = Camera.objects.filter(enabled=True)
    if public_ids:
        cameras = cameras.filter(public_id__in=public_ids)
    return [CameraConfig.of(camera) for camera in cameras]


def cameras_capture_expected() -> bool:
    """Whether this deployment should be capturing: some enabled camera reads a source."""
    return Camera.objects.filter(enabled=True).exclude(source__istartswith="push:").exists()


def cameras_online_exist() -> bool:
    return Camera.objects.filter(enabled=True, status=Camera.Status.ONLINE).exists()


@dataclass(frozen=True)
class CameraHealth:
    """What a camera is doing now, in terms a person acts on.

    `capture`: connecting, online, offline or disabled. `recorder`: `recording`,
    `paused: <reason>`, or `not recording` (recording off, no detections to record, or no
    recorder reporting).
    """

    capture: str
    measured_fps: float | None
    last_frame_at: datetime | None
    last_error: str
    recorder: str
    last_event_at: datetime | None

    @property
    def last_frame_age_seconds(self) -> float | None:
        return _age_seconds(self.last_frame_at)

    @property
    def last_event_age_seconds(self) -> float | None:
        return _age_seconds(self.last_event_at)


def _age_seconds(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return round(max(0.0, time.time() - moment.timestamp()), 1)


def _from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


# capture, measured fps, last frame, last error
_CaptureState = tuple[str, float | None, datetime | None, str]

# Shared by every request thread that shows camera health.
_cache_failures = ContainedFailures(
    what="Reading camera health",
    logger=logger,
    failed_message="Cannot read camera health from the cache",
    recovered_message="Camera health is read from the cache again",
)


def _heartbeats(names: list[str]) -> dict[str, dict[str, Any]] | None:
    """The heartbeats among `names`, or None when the cache cannot be read (logged once)."""
    try:
        beats = heartbeats_read(names)
    except Exception as error:
        _cache_failures.failed(error)
        return None
    _cache_failures.succeeded()
    return beats


def camera_health_many(*, cameras: Iterable[Camera]) -> dict[str, CameraHealth]:
    """Each camera's health by public id: one cache read for all of them, no queries."""
    cameras = list(cameras)
    names = [
        name
        for camera in cameras
        for name in (
            capture_heartbeat_name(camera.public_id),
            recorder_heartbeat_name(camera.public_id),
        )
    ]
    beats = _heartbeats(names) if names else {}
    return {camera.public_id: _camera_health(camera, beats) for camera in cameras}


def _camera_health(camera: Camera, beats: dict[str, dict[str, Any]] | None) -> CameraHealth:
    if beats is None:
        recorder, last_event_at = "unknown (the cache cannot be reached)", None
    else:
        recorder, last_event_at = _recorder_health(camera, beats)
    if not camera.enabled:
        capture, fps, last_frame_at, error = "disabled", None, camera.last_frame_at, ""
    elif beats is None:
        # The live part is unreachable: say what was last written, and that it may be old.
        capture, fps, last_frame_at = camera.status, camera.measured_fps, camera.last_frame_at
        error = "Live health is unavailable (the cache cannot be reached); this is the last "
        error += f"status written. {camera.last_error}".rstrip()
    elif camera.is_push:
        capture, fps, last_frame_at, error = _push_capture(camera)
    else:
        capture, fps, last_frame_at, error = _worker_capture(
            camera, beats.get(capture_heartbeat_name(camera.public_id))
        )
    return CameraHealth(
        capture=capture,
        measured_fps=fps,
        last_frame_at=last_frame_at,
        last_error=error,
        recorder=recorder,
        last_event_at=last_event_at,
    )


def _worker_capture(camera: Camera, beat: dict[str, Any] | None) -> _CaptureState:
    if beat is None:
        # A camera just added or changed waits for the supervisor's next reload.
        grace = supervisor_heartbeat_ttl()
        if (
            camera.status == Camera.Status.CONNECTING
            and time.time() - camera.updated_at.timestamp() < grace
        ):
            return "connecting", 0.0, camera.last_frame_at, camera.last_error
        # Otherwise no worker has said anything for longer than it ever stays quiet: none runs,
        # whatever the status column (written by a worker that may be long gone) says.
        if camera.status == Camera.Status.OFFLINE and camera.last_error:
            error = camera.last_error
        elif settings.CAMERAS_IN_PROCESS:
            error = "No capture worker reports for this camera (is the server starting?)."
        else:
            error = "No capture worker reports for this camera: is `manage.py runcameras` running?"
        return "offline", 0.0, camera.last_frame_at, error
    fps = beat.get("fps")
    return (
        beat["state"],
        camera.measured_fps if fps is None else fps,
        _from_epoch(beat.get("last_frame_at")) or camera.last_frame_at,
        beat.get("last_error") or "",
    )


def _push_capture(camera: Camera) -> _CaptureState:
    """push: cameras have no worker: their state is what ingest wrote, aged by the clock."""
    offline_after = settings.CAMERA_OFFLINE_AFTER_SECONDS
    if camera.last_frame_at is None:
        return "offline", 0.0, None, "Waiting for a publisher: no frame has been pushed yet."
    silent_for = time.time() - camera.last_frame_at.timestamp()
    if silent_for >= offline_after:
        error = f"No frame has been pushed for {offline_after:g} s."
        return "offline", 0.0, camera.last_frame_at, error
    return camera.status, camera.measured_fps, camera.last_frame_at, camera.last_error


def _recorder_health(
    camera: Camera, beats: dict[str, dict[str, Any]]
) -> tuple[str, datetime | None]:
    if not settings.EVENTS_RECORDING or not camera.enabled:
        return "not recording", None
    beat = beats.get(recorder_heartbeat_name(camera.public_id))
    if beat is None:
        return "not recording", None
    state = beat.get("state") or "recording"
    if state == "paused":
        state = f"paused: {beat.get('reason') or 'no reason given'}"
    return state, _from_epoch(beat.get("last_event_at"))
