"""The camera pages for organization admins: add, edit, disable/enable, delete. Members see the
same pages read-only and get 403 on every action; another organization's camera is a 404."""

from __future__ import annotations

import pytest
from django.test import Client

from cameras.models import Camera
from cameras.services import camera_create

pytestmark = pytest.mark.django_db


def logged_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=f"{username}-password")
    return client


@pytest.fixture
def alice_client(alice, organization) -> Client:  # the organization's owner
    return logged_in("alice")


@pytest.fixture
def bob_client(bob, organization) -> Client:  # a member
    return logged_in("bob")


def settings_post(**fields) -> dict:
    return {
        "name": "Gate",
        "source": "demo:gate",
        "detectors": ["motion", "person"],
        "target_fps": "8",
        "max_width": "480",
        "jpeg_quality": "70",
        "min_confidence": "0.4",
        "enabled": "on",
        **fields,
    }


def test_an_admin_adds_a_camera_through_the_page(alice_client, organization):
    form = alice_client.get("/cameras/add/").content.decode()
    assert 'id="source-test-button"' in form
    assert 'type="checkbox" name="detectors" value="person"' in form

    response = alice_client.post(
        "/cameras/add/", settings_post(organization=organization.pk), follow=True
    )
    camera = Camera.objects.get(name="Gate")
    assert response.redirect_chain == [(f"/cameras/{camera.public_id}/", 302)]
    assert "Added Gate." in response.content.decode()
    assert camera.organization == organization
    assert camera.source == "demo:gate"
    assert camera.detectors == ["motion", "person"]
    assert (camera.target_fps, camera.max_width, camera.jpeg_quality) == (8, 480, 70)
    assert camera.min_confidence == 0.4 and camera.enabled


def test_a_refused_add_shows_the_form_again_with_the_reason(alice_client, organization):
    response = alice_client.post(
        "/cameras/add/",
        settings_post(organization=organization.pk, source="rtsp://10.0.0.5/stream"),
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "not allowed by policy (an administrator can allow it with CAMERA_ALLOWED_NETWORKS)" in (
        html
    )
    assert 'value="rtsp://10.0.0.5/stream"' in html  # what was typed is kept
    assert not Camera.objects.exists()


def test_the_list_and_the_camera_page_offer_the_actions_to_admins(alice_client, demo_camera):
    assert 'id="camera-add"' in alice_client.get("/cameras/").content.decode()
    page = alice_client.get(f"/cameras/{demo_camera.public_id}/").content.decode()
    assert f'href="/cameras/{demo_camera.public_id}/edit/"' in page
    assert f'action="/cameras/{demo_camera.public_id}/disable"' in page


def test_an_admin_edits_a_camera_and_an_unchanged_source_keeps_its_status(
    alice_client, demo_camera
):
    Camera.objects.filter(pk=demo_camera.pk).update(status="online")
    form = alice_client.get(f"/cameras/{demo_camera.public_id}/edit/").content.decode()
    assert 'value="demo:"' in form and 'value="motion" id="id_detectors_0" checked' in form

    response = alice_client.post(
        f"/cameras/{demo_camera.public_id}/edit/",
        settings_post(name="Lobby east", source="demo:", target_fps="5"),
    )
    assert response.status_code == 302
    demo_camera.refresh_from_db()
    assert (demo_camera.name, demo_camera.target_fps) == ("Lobby east", 5)
    assert demo_camera.status == "online"

    alice_client.post(f"/cameras/{demo_camera.public_id}/edit/", settings_post(source="demo:b"))
    demo_camera.refresh_from_db()
    assert (demo_camera.source, demo_camera.status) == ("demo:b", "connecting")


def test_an_invalid_edit_changes_nothing_and_keeps_the_cameras_name_in_the_title(
    alice_client, demo_camera
):
    response = alice_client.post(
        f"/cameras/{demo_camera.public_id}/edit/", settings_post(name="", target_fps="99")
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "<h1>Lobby: settings</h1>" in html
    assert "Ensure this value is less than or equal to 30." in html
    demo_camera.refresh_from_db()
    assert (demo_camera.name, demo_camera.target_fps) == ("Lobby", 10)


def test_an_admin_disables_and_enables_a_camera(alice_client, demo_camera):
    response = alice_client.post(f"/cameras/{demo_camera.public_id}/disable", follow=True)
    assert "Lobby is disabled." in response.content.decode()
    demo_camera.refresh_from_db()
    assert not demo_camera.enabled
    assert f'action="/cameras/{demo_camera.public_id}/enable"' in response.content.decode()

    alice_client.post(f"/cameras/{demo_camera.public_id}/enable")
    demo_camera.refresh_from_db()
    assert demo_camera.enabled and demo_camera.status == "connecting"


def test_an_admin_deletes_a_camera_once_it_is_confirmed(alice_client, demo_camera):
    response = alice_client.post(f"/cameras/{demo_camera.public_id}/delete", follow=True)
    assert "Tick the box to confirm" in response.content.decode()
    assert Camera.objects.filter(pk=demo_camera.pk).exists()

    response = alice_client.post(
        f"/cameras/{demo_camera.public_id}/delete", {"confirm": "yes"}, follow=True
    )
    assert response.redirect_chain == [("/cameras/", 302)]
    assert "Deleted Lobby with its events." in response.content.decode()
    assert not Camera.objects.filter(pk=demo_camera.pk).exists()


def test_a_member_sees_the_settings_read_only_without_credentials(bob_client, organization):
    camera = camera_create(
        organization=organization,
        name="Door",
        source="rtsp://admin:hunter2@cam.example.org/stream",
        detectors=["motion"],
    )
    page = bob_client.get(f"/cameras/{camera.public_id}/").content.decode()
    assert f'href="/cameras/{camera.public_id}/edit/">Settings</a>' in page
    assert "/disable" not in page and "Delete" not in page
    assert 'id="camera-add"' not in bob_client.get("/cameras/").content.decode()

    response = bob_client.get(f"/cameras/{camera.public_id}/edit/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="read-only"' in html
    assert "hunter2" not in html and 'value="rtsp://admin:***@cam.example.org/stream"' in html
    assert 'name="name" value="Door" maxlength="120" required disabled' in html
    assert 'id="source-test-button"' not in html and 'id="camera-save"' not in html
    assert "camera_form.js" not in html


def test_a_member_gets_403_on_every_action(bob_client, organization, demo_camera):
    base = f"/cameras/{demo_camera.public_id}"
    responses = [
        bob_client.get("/cameras/add/"),
        bob_client.post("/cameras/add/", settings_post(organization=organization.pk)),
        bob_client.post(f"{base}/edit/", settings_post(name="Renamed")),
        bob_client.post(f"{base}/disable"),
        bob_client.post(f"{base}/enable"),
        bob_client.post(f"{base}/delete", {"confirm": "yes"}),
    ]
    assert [response.status_code for response in responses] == [403] * 6
    assert "Only admins and owners may add, change and delete cameras" in (
        responses[2].content.decode()
    )
    demo_camera.refresh_from_db()
    assert (demo_camera.name, demo_camera.enabled) == ("Lobby", True)
    assert Camera.objects.count() == 1


def test_another_organizations_camera_is_not_found(alice_client, charlie_camera):
    base = f"/cameras/{charlie_camera.public_id}"
    responses = [
        alice_client.get(f"{base}/edit/"),
        alice_client.post(f"{base}/edit/", settings_post()),
        alice_client.post(f"{base}/disable"),
        alice_client.post(f"{base}/delete", {"confirm": "yes"}),
    ]
    assert [response.status_code for response in responses] == [404] * 4
    charlie_camera.refresh_from_db()
    assert charlie_camera.enabled and charlie_camera.name == "Charlie's door"


def test_a_camera_cannot_be_added_to_another_organization(
    alice_client, organization, charlie_organization
):
    response = alice_client.post(
        "/cameras/add/", settings_post(organization=charlie_organization.pk)
    )
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert not Camera.objects.exists()


def test_the_actions_need_the_csrf_token(alice, organization, demo_camera):
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password="alice-password")
    base = f"/cameras/{demo_camera.public_id}"
    assert client.post(f"{base}/disable").status_code == 403
    assert client.post(f"{base}/delete", {"confirm": "yes"}).status_code == 403
    assert client.post(f"{base}/edit/", settings_post(name="Renamed")).status_code == 403
    add = client.post("/cameras/add/", settings_post(organization=organization.pk))
    assert add.status_code == 403
    demo_camera.refresh_from_db()
    assert (demo_camera.name, demo_camera.enabled) == ("Lobby", True)
    assert Camera.objects.count() == 1

    # With the token the page gives, the same post goes through.
    client.get(f"{base}/")
    token = client.cookies["csrftoken"].value
    assert client.post(f"{base}/disable", {"csrfmiddlewaretoken": token}).status_code == 302


def test_the_actions_are_post_only(alice_client, demo_camera):
    base = f"/cameras/{demo_camera.public_id}"
    assert alice_client.get(f"{base}/disable").status_code == 405
    assert alice_client.get(f"{base}/delete").status_code == 405


def test_an_oversized_body_is_refused(alice_client, organization, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    response = alice_client.post(
        "/cameras/add/", settings_post(organization=organization.pk, name="x" * 5000)
    )
    assert response.status_code == 400
    assert not Camera.objects.exists()


def test_malformed_settings_are_refused_with_their_reasons(alice_client, organization):
    response = alice_client.post(
        "/cameras/add/",
        settings_post(
            organization="not-a-number",
            name="x" * 121,
            detectors=["motion", "laser"],
            max_width="wide",
            min_confidence="2",
        ),
    )
    assert response.status_code == 400
    html = response.content.decode()
    for words in (
        "Select a valid choice. That choice is not one of the available choices.",
        "Ensure this value has at most 120 characters (it has 121).",
        "Select a valid choice. laser is not one of the available choices.",
        "Enter a whole number.",
        "Ensure this value is less than or equal to 1.0.",
    ):
        assert words in html
    assert not Camera.objects.exists()
