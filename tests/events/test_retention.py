"""Retention: prune_events deletes old events and sessions together with their snapshot files,
and so does deleting their camera, however it is deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from events.models import CameraSession, DetectionEvent
from tests.events.conftest import event_make, session_make

pytestmark = pytest.mark.django_db


def aged(camera, *, days: float, label: str = "person") -> DetectionEvent:
    event = event_make(camera, label=label, at=datetime.now(UTC) - timedelta(days=days))
    event.snapshot.save(
        f"{label}-{days}.jpg", ContentFile(b"\xff\xd8 not really a jpeg"), save=True
    )
    return event


def test_prune_events_deletes_old_events_sessions_and_their_files(media_root, front_door, settings):
    settings.EVENTS_RETENTION_DAYS = 7
    old = aged(front_door, days=8)
    recent = aged(front_door, days=6)
    old_session = session_make(front_door, at=datetime.now(UTC) - timedelta(days=9))
    recent_session = session_make(front_door, at=datetime.now(UTC) - timedelta(days=1))
    old_file, recent_file = old.snapshot.name, recent.snapshot.name
    assert default_storage.exists(old_file)

    out = StringIO()
    call_command("prune_events", stdout=out)

    assert "Deleted 1 events, 1 sessions and 1 snapshot files older than 7 days" in out.getvalue()
    assert list(DetectionEvent.objects.all()) == [recent]
    assert list(CameraSession.objects.all()) == [recent_session]
    assert not default_storage.exists(old_file)
    assert default_storage.exists(recent_file)
    assert not CameraSession.objects.filter(pk=old_session.pk).exists()


def test_prune_events_takes_the_days_from_the_command_line(media_root, front_door):
    aged(front_door, days=3)
    call_command("prune_events", days=2, stdout=StringIO())
    assert not DetectionEvent.objects.exists()


def test_prune_events_keeps_an_open_session_however_old(media_root, front_door):
    session = session_make(front_door, at=datetime.now(UTC) - timedelta(days=90))
    CameraSession.objects.filter(pk=session.pk).update(ended_at=None)
    call_command("prune_events", stdout=StringIO())
    assert CameraSession.objects.filter(pk=session.pk).exists()


def test_prune_events_works_through_many_events_in_chunks(media_root, front_door):
    start = datetime.now(UTC) - timedelta(days=400)
    DetectionEvent.objects.bulk_create(
        DetectionEvent(
            organization_id=front_door.organization_id,
            camera=front_door,
            label="motion",
            started_at=start,
            last_seen_at=start,
            ended_at=start,
            peak_confidence=0.5,
        )
        for _ in range(1_200)
    )
    call_command("prune_events", stdout=StringIO())
    assert not DetectionEvent.objects.exists()


def test_prune_events_refuses_zero_days():
    with pytest.raises(CommandError):
        call_command("prune_events", days=0, stdout=StringIO())


def test_deleting_a_camera_deletes_its_snapshot_files(media_root, front_door, alice_api):
    event = aged(front_door, days=1)
    name = event.snapshot.name
    assert default_storage.exists(name)

    response = alice_api.delete(f"/api/v1/cameras/{front_door.public_id}")

    assert response.status_code == 204
    assert not DetectionEvent.objects.filter(pk=event.pk).exists()
    assert not default_storage.exists(name)


def test_deleting_a_camera_in_the_admin_deletes_its_snapshot_files(
    media_root, front_door, client, django_user_model
):
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    name = aged(front_door, days=1).snapshot.name
    client.force_login(admin)

    client.post(
        "/admin/cameras/camera/",
        {"action": "delete_selected", "_selected_action": [front_door.pk], "post": "yes"},
    )

    assert not default_storage.exists(name)


def test_deleting_an_organization_deletes_its_cameras_snapshot_files(
    media_root, organization, alice, front_door, back_yard
):
    # organizations knows nothing of cameras or events: the cascade and events' pre_delete
    # receiver on Camera do it.
    from organizations.services import organization_delete

    names = [aged(front_door, days=1).snapshot.name, aged(back_yard, days=2).snapshot.name]
    assert all(default_storage.exists(name) for name in names)

    organization_delete(actor=alice, organization=organization)

    assert not DetectionEvent.objects.exists()
    assert not any(default_storage.exists(name) for name in names)
