"""Events fixtures: cameras for Alice and Charlie, a recorder without its thread, and a way to
put events in the database exactly where a test wants them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from cameras.services import camera_create
from events.models import CameraSession, DetectionEvent
from events.recording import Recorder


@pytest.fixture(autouse=True)
def _close_connections_of_the_shared_sync_thread():
    yield
    # database_sync_to_async outside a request (the assistant's lookups in async tests) runs in
    # asgiref's one shared thread; its connection must not outlive the test database.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture
def front_door(organization):
    return camera_create(organization=organization, name="Front door", source="push:")


@pytest.fixture
def back_yard(organization):
    return camera_create(organization=organization, name="Back yard", source="push:")


@pytest.fixture
def charlie_camera(charlie_organization):
    return camera_create(organization=charlie_organization, name="Charlie gate", source="push:")


@pytest.fixture
def recorder(media_root):
    """A recorder flushed by the test itself (no thread), storing snapshots in a temp folder."""
    recorder = Recorder(gap_seconds=1.0, flush_seconds=1.0, idle_seconds=10.0, run_flusher=False)
    yield recorder


def event_make(
    camera,
    *,
    label: str,
    at: datetime,
    seconds: float = 3.0,
    confidence: float = 0.8,
    session: CameraSession | None = None,
    ongoing: bool = False,
    track_id: int | None = None,
    path: list | None = None,
) -> DetectionEvent:
    """An event as the recorder would have stored it (the recorder itself is tested elsewhere)."""
    end = at + timedelta(seconds=seconds)
    return DetectionEvent.objects.create(
        organization_id=camera.organization_id,
        camera=camera,
        session=session,
        label=label,
        started_at=at,
        last_seen_at=end,
        ended_at=None if ongoing else end,
        peak_confidence=confidence,
        frames_seen=int(seconds * 10),
        best_bbox=[10, 20, 30, 40],
        track_id=track_id,
        path=path or [],
    )


def session_make(camera, *, at: datetime, minutes: float = 10, counts=None) -> CameraSession:
    end = at + timedelta(minutes=minutes)
    return CameraSession.objects.create(
        organization_id=camera.organization_id,
        camera=camera,
        started_at=at,
        last_frame_at=end,
        ended_at=end,
        frames_processed=int(minutes * 600),
        measured_fps=10.0,
        counts=counts or {},
    )
