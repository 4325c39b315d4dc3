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


def camera_add_post(admin_client, organization, **fields):
    return admin_client.post(
        "/admin/cameras/camera/add/",
        {
            "organization": organization.pk,
            "name": "Gate",
            "source": "demo:",
            "enabled": "on",
            "target_fps": 10,
            "max_width": 640,
            "jpeg_quality": 75,
            "min_confidence": 0.5,
            **fields,
        },
    )


def test_admin_detectors_are_checkboxes_posted_as_a_list(admin_client, organization):
    form = admin_client.get("/admin/cameras/camera/add/").content.decode()
    assert 'type="checkbox" name="detectors" value="motion"' in form
    assert "about 14 ms a frame" in form  # the cost note, as on the camera pages

    response = camera_add_post(admin_client, organization, detectors=["motion", "person"])
    assert response.status_code == 302
    assert Camera.objects.get(name="Gate").detectors == ["motion", "person"]


def test_admin_detectors_typed_as_text_are_a_choice_error_not_a_json_one(
    admin_client, organization
):
    response = camera_add_post(admin_client, organization, detectors="motion, person")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid JSON" not in html
    assert "Select a valid choice. motion, person is not one of the available choices." in html
    assert not Camera.objects.filter(name="Gate").exists()


def test_admin_form_rejects_an_unknown_detector(admin_client, organization):
    response = camera_add_post(admin_client, organization, detectors=["unicorn"])
    assert response.status_code == 200
    assert "unicorn is not one of the available choices" in response.content.decode()
    assert not Camera.objects.filter(name="Gate").exists()


def test_admin_change_form_shows_the_cameras_detectors_ticked(admin_client, demo_camera):
    html = admin_client.get(f"/admin/cameras/camera/{demo_camera.pk}/change/").content.decode()
    assert 'name="detectors" value="motion" id="id_detectors_0" checked' in html
    assert 'name="detectors" value="person" id="id_detectors_1" checked' not in html
