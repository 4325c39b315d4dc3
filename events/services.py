"""Writes about events and sessions that are not the recorder's: retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.files.storage import default_storage
from django.db import transaction

from cameras.models import Camera
from events.models import CameraSession, DetectionEvent

_CHUNK = 500


@dataclass(frozen=True)
class PruneResult:
    events: int
    sessions: int
    snapshots: int


def _events_delete(events) -> tuple[int, int]:
    """Delete these events in chunks, then their snapshot files; returns (events, files).

    Chunks keep a year of events from becoming one huge transaction; files are removed only
    after their rows are gone, so a failure never leaves a row without its file."""
    events_deleted = snapshots_deleted = 0
    while True:
        chunk = list(events.order_by("pk").values_list("pk", "snapshot")[:_CHUNK])
        if not chunk:
            break
        with transaction.atomic():
            DetectionEvent.objects.filter(pk__in=[pk for pk, _ in chunk]).delete()
        events_deleted += len(chunk)
        for _, name in chunk:
            if name and default_storage.exists(name):
                default_storage.delete(name)
                snapshots_deleted += 1
    return events_deleted, snapshots_deleted


def events_prune(*, older_than: datetime) -> PruneResult:
    """Delete events last seen and sessions last active before `older_than`, with snapshots."""
    events_deleted, snapshots_deleted = _events_delete(
        DetectionEvent.objects.filter(last_seen_at__lt=older_than)
    )
    sessions_deleted, _ = CameraSession.objects.filter(
        ended_at__isnull=False, last_frame_at__lt=older_than
    ).delete()
    return PruneResult(
        events=events_deleted, sessions=sessions_deleted, snapshots=snapshots_deleted
    )


def camera_events_delete(*, camera: Camera) -> int:
    """Delete a camera's events with their snapshot files (the rows alone would cascade, but
    the files would stay on disk); returns how many files were removed."""
    _, snapshots_deleted = _events_delete(DetectionEvent.objects.filter(camera=camera))
    return snapshots_deleted


def camera_events_delete_before_camera(sender, instance: Camera, **signal) -> None:
    """`pre_delete` receiver for Camera (connected in EventsConfig.ready): however a camera is
    deleted (the API, the admin, with its organization), its events go first, files included."""
    camera_events_delete(camera=instance)
