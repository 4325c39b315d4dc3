"""The permission matrix: every role × every endpoint, page, socket and admin action we gate.

Alice owns "Alice Co"; `as_role` adds a user with the asked role to it. Each refusal is a 403
naming the role needed, and the test checks that nothing was written.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from cameras.models import Camera
from cameras.publishing import PublishedFrame, frame_remember, latest_frame_get
from cameras.services import camera_create
from chats.models import Chat
from events.models import DetectionEvent
from organizations.models import Membership, Organization
from organizations.permissions import MINIMUM_ROLE, Action, role_allows
from organizations.services import api_token_create, membership_add
from project.asgi import application
from tests.cameras.conftest import jpeg_b64, jpeg_bytes, now_ms
from tests.conftest import _token_client

pytestmark = pytest.mark.django_db

ROLES = ["viewer", "member", "admin", "owner"]
SECRET_SOURCE = "rtsp://admin:S3cretPw@gate.example.org:554/stream1?token=T0kenValue"


@pytest.fixture
def cameras(organization):
    return {
        "rtsp": camera_create(
            organization=organization, name="Gate", source=SECRET_SOURCE, enabled=False
        ),
        "push": camera_create(organization=organization, name="Webcam", source="push:"),
    }


@pytest.fixture
def as_role(alice, organization, django_user_model):
    """as_role("viewer") → (user, token client) holding that role in Alice Co."""

    def make(role: str):
        if role == "owner":
            user = alice
        else:
            user = django_user_model.objects.create_user(
                f"{role}-user", f"{role}@example.org", f"{role}-user-password"
            )
            membership_add(organization=organization, user=user, role=role)
        return user, _token_client(user)

    return make


def assert_forbidden(response, needed: str) -> None:
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["code"] == "forbidden"
    assert needed in body["error"] and "your role in Alice Co is" in body["error"]


def test_the_roles_are_ordered_and_each_action_has_a_least_role():
    assert set(MINIMUM_ROLE) == set(Action)
    for action in Action:
        allowed = [role for role in ROLES if role_allows(role, action)]
        # Whoever may do something, every stronger role may too.
        assert allowed == ROLES[ROLES.index(allowed[0]) :]
    assert not role_allows(None, Action.WATCH)
    assert not role_allows("superhero", Action.WATCH)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_cameras_events_members_and_chats(role, as_role, cameras, organization):
    user, api = as_role(role)
    camera = cameras["rtsp"]
    DetectionEvent.objects.create(
        organization=organization,
        camera=camera,
        label="person",
        started_at=timezone.now() - timedelta(minutes=1),
        last_seen_at=timezone.now(),
        peak_confidence=0.9,
        frames_seen=3,
        best_bbox=[1, 2, 3, 4],
    )
    for url in [
        "/api/v1/organizations",
        f"/api/v1/organizations/{organization.pk}",
        f"/api/v1/organizations/{organization.pk}/members",
        "/api/v1/cameras",
        f"/api/v1/cameras/{camera.public_id}",
        "/api/v1/events",
        f"/api/v1/cameras/{camera.public_id}/sessions",
        f"/api/v1/cameras/{camera.public_id}/activity",
        "/api/v1/chats",
    ]:
        assert api.get(url).status_code == 200, url
    # Chatting is for everyone.
    response = api.post("/api/v1/chats", {"title": "Mine"}, format="json")
    assert response.status_code == 201
    assert Chat.objects.filter(user=user).count() == 1


@pytest.mark.parametrize(
    ("role", "allowed"), [("viewer", False), ("member", False), ("admin", True), ("owner", True)]
)
def test_only_admins_and_owners_create_change_and_delete_cameras(role, allowed, as_role, cameras):
    _, api = as_role(role)
    camera = cameras["rtsp"]
    before = Camera.objects.count()
    create = api.post("/api/v1/cameras", {"name": "New", "source": "demo:"}, format="json")
    patch = api.patch(f"/api/v1/cameras/{camera.public_id}", {"name": "Renamed"}, format="json")
    delete = api.delete(f"/api/v1/cameras/{cameras['push'].public_id}")
    if allowed:
        assert (create.status_code, patch.status_code, delete.status_code) == (201, 200, 204)
        assert Camera.objects.count() == before  # one added, one deleted
        assert Camera.objects.get(pk=camera.pk).name == "Renamed"
    else:
        for response in (create, patch, delete):
            assert_forbidden(response, "Only admins and owners may add, change and delete cameras")
        assert Camera.objects.count() == before
        assert Camera.objects.get(pk=camera.pk).name == "Gate"
        assert not Camera.objects.filter(name="New").exists()


@pytest.mark.parametrize(
    ("role", "status"), [("viewer", 403), ("member", 200), ("admin", 200), ("owner", 200)]
)
def test_new_frames_into_a_push_camera_need_a_member(role, status, as_role, cameras):
    _, api = as_role(role)
    camera = cameras["push"]
    timestamp = now_ms()
    body = {
        "streamName": "webcam",
        "streamType": "frame",
        "frame": jpeg_b64(),
        "timestamp": timestamp,
        "camera_id": camera.public_id,
    }
    response = api.post(
        "/api/v1/actions/actions/send", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == status, response.content
    if status == 403:
        assert_forbidden(response, "Only members, admins and owners may publish frames")
        assert latest_frame_get(camera.public_id) is None
        fresh = Camera.objects.get(pk=camera.pk)
        assert (fresh.status, fresh.last_frame_at) == ("connecting", None)
    else:
        assert response.json()["duplicate"] is False
        assert latest_frame_get(camera.public_id).timestamp == timestamp


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_forward_frames_that_were_already_published(role, as_role, organization):
    # The seed's player forwards every frame it shows, a viewer's too: answered as duplicates.
    _, api = as_role(role)
    camera = camera_create(organization=organization, name="Demo", source="demo:")
    timestamp = now_ms()
    frame_remember(
        PublishedFrame.build(
            camera_id=camera.public_id, jpeg=jpeg_bytes(), timestamp=timestamp, detections=[]
        )
    )
    body = {
        "streamName": "player",
        "streamType": "frame",
        "frame": jpeg_b64(),
        "timestamp": timestamp,
        "camera_id": camera.public_id,
    }
    response = api.post(
        "/api/v1/actions/actions/send", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["duplicate"] is True


@pytest.mark.parametrize(
    ("role", "allowed"), [("viewer", False), ("member", False), ("admin", True), ("owner", True)]
)
def test_only_admins_and_owners_change_the_organization(role, allowed, as_role, organization):
    _, api = as_role(role)
    response = api.patch(
        f"/api/v1/organizations/{organization.pk}",
        {"name": "Renamed Co", "server_host_url": "wss://cams.example.org:8443"},
        format="json",
    )
    organization.refresh_from_db()
    if allowed:
        assert response.status_code == 200, response.content
        assert response.json()["server_host_url"] == "wss://cams.example.org:8443"
        assert organization.name == "Renamed Co"
    else:
        assert_forbidden(response, "Only admins and owners may change the organization's settings")
        assert (organization.name, organization.server_host_url) == ("Alice Co", "")


@pytest.mark.parametrize(
    ("role", "allowed"), [("viewer", False), ("member", False), ("admin", False), ("owner", True)]
)
def test_only_owners_delete_the_organization(role, allowed, as_role, organization, cameras):
    _, api = as_role(role)
    response = api.delete(f"/api/v1/organizations/{organization.pk}")
    if allowed:
        assert response.status_code == 204
        assert not Organization.objects.filter(pk=organization.pk).exists()
        assert not Camera.objects.filter(organization_id=organization.pk).exists()
        assert not Membership.objects.filter(organization_id=organization.pk).exists()
    else:
        assert_forbidden(response, "Only owners may delete the organization")
        assert Organization.objects.filter(pk=organization.pk).exists()
        assert Camera.objects.filter(organization=organization).count() == 2


@pytest.mark.parametrize(
    ("role", "add_viewer", "add_admin"),
    [("viewer", 403, 403), ("member", 403, 403), ("admin", 201, 403), ("owner", 201, 201)],
)
def test_admins_add_members_and_viewers_owners_add_anyone(
    role, add_viewer, add_admin, as_role, organization, charlie, django_user_model
):
    _, api = as_role(role)
    url = f"/api/v1/organizations/{organization.pk}/members"
    dave = django_user_model.objects.create_user("dave", "dave@example.org", "x")
    first = api.post(url, {"user": "charlie", "role": "viewer"}, format="json")
    second = api.post(url, {"user": "dave@example.org", "role": "admin"}, format="json")
    assert (first.status_code, second.status_code) == (add_viewer, add_admin)
    assert Membership.objects.filter(organization=organization, user=charlie).exists() == (
        add_viewer == 201
    )
    assert Membership.objects.filter(organization=organization, user=dave).exists() == (
        add_admin == 201
    )
    if add_admin == 403:
        needed = "Only owners may" if role == "admin" else "Only admins and owners may"
        assert_forbidden(second, needed)


# --- pages ------------------------------------------------------------------------------------


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_pages_and_only_members_up_get_the_publish_page(
    role, as_role, cameras, organization
):
    user, _ = as_role(role)
    client = _page_client(user)
    for url in [
        "/cameras/",
        f"/cameras/{cameras['rtsp'].public_id}/",
        f"/cameras/{cameras['push'].public_id}/",
        "/events/",
        "/chats/",
        "/organizations/",
        f"/organizations/{organization.pk}/",
    ]:
        assert client.get(url).status_code == 200, url
    publish = client.get(f"/cameras/{cameras['push'].public_id}/publish")
    grid = client.get("/cameras/").content.decode()
    if role == "viewer":
        assert publish.status_code == 403
        assert "Only members, admins and owners may publish" in publish.content.decode()
        assert "publish a webcam" not in grid
    else:
        assert publish.status_code == 200
        assert "publish a webcam" in grid


@pytest.mark.parametrize(
    ("role", "allowed"), [("viewer", False), ("member", False), ("admin", True), ("owner", True)]
)
def test_organization_page_settings_form_needs_an_admin(role, allowed, as_role, organization):
    user, _ = as_role(role)
    client = _page_client(user)
    page = client.get(f"/organizations/{organization.pk}/").content.decode()
    assert ('id="settings"' in page) == allowed
    assert ('id="member-add"' in page) == allowed
    response = client.post(
        f"/organizations/{organization.pk}/settings",
        {"name": "Renamed Co", "server_host_url": "cams.example.org", "ws_port": "8443"},
        follow=True,
    )
    organization.refresh_from_db()
    assert (organization.name == "Renamed Co") == allowed
    if not allowed:
        assert "Only admins and owners may change the organization" in response.content.decode()


# --- the WebSocket: everyone who is a member watches -------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "member"])
@pytest.mark.django_db(transaction=True)
async def test_viewers_and_members_can_watch_live(role, as_role, organization):
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Demo", source="demo:"
    )
    user, _ = await sync_to_async(as_role)(role)
    _, raw = await sync_to_async(api_token_create)(user=user)
    await sync_to_async(frame_remember)(
        PublishedFrame.build(
            camera_id=camera.public_id, jpeg=jpeg_bytes(), timestamp=now_ms(), detections=[]
        )
    )
    communicator = WebsocketCommunicator(
        application,
        f"/ws/stream/{camera.public_id}",
        headers=[(b"authorization", f"Bearer {raw}".encode())],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    frame = json.loads(await communicator.receive_from(timeout=5))
    assert frame["camera_id"] == camera.public_id
    await communicator.disconnect()


# --- the admin --------------------------------------------------------------------------------


@pytest.fixture
def staff_as_role(as_role):
    def make(role: str):
        user, _ = as_role(role)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        from django.contrib.auth.models import Permission

        user.user_permissions.set(Permission.objects.filter(content_type__app_label="cameras"))
        return user, _page_client(user)

    return make


@pytest.mark.parametrize(
    ("role", "allowed"), [("viewer", False), ("member", False), ("admin", True), ("owner", True)]
)
def test_admin_changes_and_actions_on_cameras_need_an_admin_role(
    role, allowed, staff_as_role, cameras
):
    _, client = staff_as_role(role)
    camera = cameras["rtsp"]
    changelist = client.get("/admin/cameras/camera/")
    assert changelist.status_code == 200
    text = changelist.content.decode()
    assert "Gate" in text
    assert ("S3cretPw" in text) == allowed
    assert ("T0kenValue" in text) == allowed
    if not allowed:
        assert "rtsp://admin:***@gate.example.org:554/stream1?token=***" in text
    change_page = client.get(f"/admin/cameras/camera/{camera.pk}/change/")
    assert change_page.status_code == 200
    assert ("S3cretPw" in change_page.content.decode()) == allowed
    # Searching by source would reveal a masked password one guess at a time: only superusers
    # (who see every source) search by it.
    search = client.get("/admin/cameras/camera/?q=S3cretPw").content.decode()
    assert "Gate" not in search
    response = client.post(
        f"/admin/cameras/camera/{camera.pk}/change/",
        {
            "organization": camera.organization_id,
            "name": "Renamed",
            "source": "demo:",
            "target_fps": 10,
            "max_width": 640,
            "jpeg_quality": 70,
            "detectors": ["motion"],  # checkboxes (issue 9): one value per ticked box
            "min_confidence": 0.5,
            "onnx_model": "",
            "onnx_labels": "",
        },
    )
    assert (Camera.objects.get(pk=camera.pk).name == "Renamed") == allowed
    if not allowed:
        assert response.status_code == 403
    delete = client.post(f"/admin/cameras/camera/{cameras['push'].pk}/delete/", {"post": "yes"})
    assert Camera.objects.filter(pk=cameras["push"].pk).exists() != allowed
    if not allowed:
        assert delete.status_code == 403
    another_push = camera_create(organization=camera.organization, name="Door", source="push:")
    grab = client.post(
        "/admin/cameras/camera/",
        {"action": "grab_test_frame", "_selected_action": [another_push.pk]},
        follow=True,
    )
    if allowed:
        assert "push: camera has no source to read" in grab.content.decode()
    else:
        assert "Only admins and owners of its organization" in grab.content.decode()


def test_staff_without_a_membership_see_no_cameras_in_the_admin(
    cameras, charlie, charlie_organization
):
    charlie.is_staff = True
    charlie.save()
    from django.contrib.auth.models import Permission

    charlie.user_permissions.set(Permission.objects.filter(content_type__app_label="cameras"))
    client = _page_client(charlie)
    assert "Gate" not in client.get("/admin/cameras/camera/").content.decode()
    assert client.get(f"/admin/cameras/camera/{cameras['rtsp'].pk}/change/").status_code in (
        302,
        404,
    )


def test_membership_and_token_admin_are_for_superusers_only(staff_as_role, organization):
    user, client = staff_as_role("admin")
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="organizations"))
    for url in [
        "/admin/organizations/membership/",
        "/admin/organizations/apitoken/",
        "/admin/organizations/organization/",
    ]:
        assert client.get(url).status_code == 403, url
