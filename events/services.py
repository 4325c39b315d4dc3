"""Writes about events and sessions that are not the recorder's: retention, clips and their
disk budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Sum

from cameras.models import Camera
from events.models import CameraSession, DetectionEvent

logger = logging.getLogger(__name__)

_CHUNK = 500


@dataclass(frozen=True)
class PruneResult:
    events: int
    sessions: int
    snapshots: int
    clips: int = 0  # clip files removed, with their events or by the disk budget


def _files_delete(names) -> int:
    """Remove these stored files (empty names skipped); returns how many there were."""
    deleted = 0
    for name in names:
        if name and default_storage.exists(name):
            default_storage.delete(name)
            deleted += 1
    return deleted


def _events_delete(events) -> tuple[int, int, int]:
    """Delete these events in chunks, then their snapshot and clip files; returns (events,
    snapshots, clips).

    Chunks keep a year of events from becoming one huge transaction; files are removed only
    after their rows are gone, so a failure never leaves a row without its file."""
    events_deleted = snapshots_deleted = clips_deleted = 0
    while True:
        chunk = list(events.order_by("pk").values_list("pk", "snapshot", "clip")[:_CHUNK])
        if not chunk:
            break
        with transaction.atomic():
            DetectionEvent.objects.filter(pk__in=[pk for pk, _, _ in chunk]).delete()
        events_deleted += len(chunk)
        snapshots_deleted += _files_delete(snapshot for _, snapshot, _ in chunk)
        clips_deleted += _files_delete(clip for _, _, clip in chunk)
    return events_deleted, snapshots_deleted, clips_deleted


def events_delete(*, events) -> int:
    """Delete these events (a queryset) with their snapshot and clip files; returns how many
    events went. The admin deletes through this, so no file outlives its event."""
    events_deleted, _, _ = _events_delete(events)
    return events_deleted


def events_prune(*, older_than: datetime) -> PruneResult:
    """Delete events last seen and sessions last active before `older_than`, with snapshots and
    clips; then keep the clips left within RECORDINGS_MAX_GB."""
    events_deleted, snapshots_deleted, clips_deleted = _events_delete(
        DetectionEvent.objects.filter(last_seen_at__lt=older_than)
    )
    sessions_deleted, _ = CameraSession.objects.filter(
        ended_at__isnull=False, last_frame_at__lt=older_than
    ).delete()
    clips_deleted += clips_over_budget_delete(max_bytes=recordings_max_bytes())
    return PruneResult(
        events=events_deleted,
        sessions=sessions_deleted,
        snapshots=snapshots_deleted,
        clips=clips_deleted,
    )


def recordings_max_bytes() -> int:
    return int(settings.RECORDINGS_MAX_GB * 1_000_000_000)


def event_clip_attach(
    *, event_pk: int, name: str, started_at: datetime, duration_ms: int, size: int
) -> bool:
    """Name the stored clip `name` on its event; returns False, and removes the file, when the
    event is gone (deleted while its clip was being encoded)."""
    attached = DetectionEvent.objects.filter(pk=event_pk).update(
        clip=name, clip_started_at=started_at, clip_duration_ms=duration_ms, clip_bytes=size
    )
    if not attached:
        _files_delete([name])
    return bool(attached)


def clips_over_budget_delete(*, max_bytes: int) -> int:
    """Delete the oldest clips (by their event's start) until all of them take at most
    `max_bytes`; their events stay, without a clip. Returns how many clips went."""
    with_clip = DetectionEvent.objects.exclude(clip="")
    excess = (with_clip.aggregate(total=Sum("clip_bytes"))["total"] or 0) - max_bytes
    deleted = 0
    while excess > 0:
        oldest = list(
            with_clip.order_by("started_at", "id").values_list("pk", "clip", "clip_bytes")[:_CHUNK]
        )
        if not oldest:
            break
        chosen = []
        for pk, name, size in oldest:
            if excess <= 0:
                break
            chosen.append((pk, name))
            excess -= size
        # Rows first, files after: a failure leaves an unnamed file, never a name without one.
        DetectionEvent.objects.filter(pk__in=[pk for pk, _ in chosen]).update(
            clip="", clip_started_at=None, clip_duration_ms=None, clip_bytes=0
        )
        deleted += _files_delete(name for _, name in chosen)
    if deleted:
        logger.info("Deleted the %d oldest clips to stay within RECORDINGS_MAX_GB", deleted)
    return deleted


def camera_events_delete(*, camera: Camera) -> int:
    """Delete a camera's events with their snapshot and clip files (the rows alone would
    cascade, but the files would stay on disk); returns how many snapshot files were removed."""
    _, snapshots_deleted, _ = _events_delete(DetectionEvent.objects.filter(camera=camera))
    return snapshots_deleted


def camera_events_delete_before_camera(sender, instance: Camera, **signal) -> None:
    """`pre_delete` receiver for Camera (connected in EventsConfig.ready): however a camera is
    deleted (the API, the admin, with its organization), its events go first, files included."""
    camera_events_delete(camera=instance)
