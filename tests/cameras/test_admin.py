from __future__ import annotations

import pytest

from cameras.models import Camera
from cameras.services import camera_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    client.login(username="root", password="root-password")
    return client


def grab(admin_client, *cameras: Camera) -> list[str]:
    response = admin_client.post(
        "/admin/cameras/camera/",
        {"action": "grab_test_frame", "_selected_action": [c.pk for c in cameras]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_grabbing_a_test_frame_reports_its_size(admin_client, demo_camera):
    assert grab(admin_client, demo_camera) == ["Lobby: got a 640x480 frame."]


def test_grabbing_from_a_broken_source_reports_why(admin_client, organization, tmp_path):
    path = tmp_path / "gone.avi"
    path.write_bytes(b"not a video")
    camera = camera_create(organization=organization, name="Broken", source=str(path))
    [message] = grab(admin_client, camera)
    assert message.startswith("Broken: could not open")


def test_grabbing_from_a_push_camera_explains_there_is_no_source(admin_client, push_camera):
    [message] = grab(admin_client, push_camera)
    assert "push: camera has no source to read" in message


def test_changelist_shows_status_and_filters(admin_client, demo_camera):
    Camera.objects.filter(pk=demo_camera.pk).update(status="offline", last_error="boom")
    response = admin_client.get("/admin/cameras/camera/?status__exact=offline&q=Lobby")
    assert response.status_code == 200
    assert "Lobby" in response.content.decode()
    assert (
        admin_client.get("/admin/cameras/camera/?status__exact=online")
        .content.decode()
        .count("Lobby")
        == 0
    )


def test_admin_form_rejects_an_unknown_detector(admin_client, organization):
    response = admin_client.post(
        "/admin/cameras/camera/add/",
        {
            "organization": organization.pk,
            "name": "Bad",
            "source": "demo:",
            "enabled": "on",
            "target_fps": 10,
            "max_width": 640,
            "jpeg_quality": 75,
            "detectors": '["unicorn"]',
            "min_confidence": 0.5,
        },
    )
    assert response.status_code == 200
    assert "Unknown detector(s): unicorn" in response.content.decode()
    assert not Camera.objects.filter(name="Bad").exists()
