"""A camera's credentials are for admins and owners: every other surface shows `***`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from cameras.models import Camera
from cameras.services import camera_create, camera_status_update
from cameras.source_policy import source_masked
from cameras.vision.sources import SourceError, open_source
from chats.selectors import assistant_context_for_chat
from chats.services import chat_create
from events.models import DetectionEvent
from organizations.services import membership_add
from tests.conftest import _token_client
from tests.vision.test_sources import closed_port

pytestmark = pytest.mark.django_db

SECRET_SOURCE = (
    "rtsp://admin:S3cretPw@gate.example.org:554/stream1?channel=1&password=Hunter2&token=T0k"
)
MASKED = "rtsp://admin:***@gate.example.org:554/stream1?channel=1&password=***&token=***"
SECRETS = ("S3cretPw", "Hunter2", "T0k&", "=T0k")


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (SECRET_SOURCE, MASKED),
        ("rtsp://admin:S3cretPw@cam.local/live", "rtsp://admin:***@cam.local/live"),
        (
            "http://cam/mjpg?user=x&pwd=p&api_key=k#f",
            "http://cam/mjpg?user=x&pwd=***&api_key=***#f",
        ),
        # A password holding / ? # or @ must not make the parser misplace the userinfo.
        ("rtsp://u:p/w?x#y@host/s", "rtsp://u:***@host/s"),
        ("rtsp://u:p@ss@host/s", "rtsp://u:***@host/s"),
        ("http://host/x?mail=a@b.org", "http://host/x?mail=a@b.org"),
        ("demo:", "demo:"),
        ("push:", "push:"),
        ("device:0", "device:0"),
        ("/videos/lobby.mp4", "/videos/lobby.mp4"),
        ("rtsp://cam.local/live", "rtsp://cam.local/live"),
        ("https://cam.example.com/mjpeg?token=S3CRET", "https://cam.example.com/mjpeg?token=***"),
        ("rtsp://admin:p@ss#word@host/", "rtsp://admin:***@host/"),
        # Vendors that put the credentials in the path (Dahua-style and XMEye-style).
        (
            "rtsp://h/user=admin&password=X&channel=1",
            "rtsp://h/user=admin&password=***&channel=1",
        ),
        (
            "rtsp://h:554/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp?real_stream",
            "rtsp://h:554/user=admin_password=***?real_stream",
        ),
        ("http://h/cgi/pwd=x/video;token=y", "http://h/cgi/pwd=***/video;token=***"),
        ("http://h/video/keyframes=1", "http://h/video/keyframes=1"),
    ],
)
def test_source_masked(source, shown):
    assert source_masked(source) == shown


@pytest.fixture
def secret_camera(organization):
    # Disabled: no worker needs to reach the made-up address.
    return camera_create(
        organization=organization, name="Gate", source=SECRET_SOURCE, enabled=False
    )


@pytest.fixture
def viewer(organization, django_user_model):
    user = django_user_model.objects.create_user("vera", "vera@example.org", "vera-password")
    membership_add(organization=organization, user=user, role="viewer")
    return user


def _role_user(role, bob, organization):
    membership_add(organization=organization, user=bob, role=role)
    return bob


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(("role", "sees"), [("viewer", False), ("member", False), ("admin", True)])
def test_the_api_shows_the_source_to_admins_only(role, sees, bob, organization, secret_camera):
    api = _token_client(_role_user(role, bob, organization))
    listed = api.get("/api/v1/cameras").json()["results"][0]["source"]
    detail = api.get(f"/api/v1/cameras/{secret_camera.public_id}").json()["source"]
    assert listed == detail == (SECRET_SOURCE if sees else MASKED)


def test_the_owner_sees_the_source_in_create_and_update_answers(alice_api, organization):
    created = alice_api.post(
        "/api/v1/cameras",
        {"name": "Gate", "source": SECRET_SOURCE, "enabled": False},
        format="json",
    ).json()
    assert created["source"] == SECRET_SOURCE
    patched = alice_api.patch(
        f"/api/v1/cameras/{created['id']}", {"name": "Gate 2"}, format="json"
    ).json()
    assert patched["source"] == SECRET_SOURCE


@pytest.mark.parametrize(("role", "sees"), [("viewer", False), ("member", False), ("admin", True)])
def test_the_pages_show_the_source_to_admins_only(role, sees, bob, organization, secret_camera):
    client = Client()
    client.force_login(_role_user(role, bob, organization))
    detail = client.get(f"/cameras/{secret_camera.public_id}/").content.decode()
    grid = client.get("/cameras/").content.decode()
    if sees:
        assert "S3cretPw" in detail
    else:
        assert_no_secret(detail)
        assert (
            "rtsp://admin:***@gate.example.org:554/stream1?channel=1&amp;password=***&amp;token=***"
            in detail
        )
    assert_no_secret(grid)
    if role != "viewer":  # the publish page of a camera that reads its own source
        publish = client.get(f"/cameras/{secret_camera.public_id}/publish")
        assert publish.status_code == 200
        assert ("S3cretPw" in publish.content.decode()) == sees


@pytest.mark.django_db(transaction=True)
async def test_the_assistant_context_of_a_viewer_holds_no_credentials(
    viewer, organization, secret_camera
):
    def prepare():
        DetectionEvent.objects.create(
            organization=organization,
            camera=secret_camera,
            label="person",
            started_at=timezone.now() - timedelta(minutes=2),
            last_seen_at=timezone.now(),
            peak_confidence=0.9,
            frames_seen=3,
            best_bbox=[1, 2, 3, 4],
        )
        chat = chat_create(user=viewer, organization=organization, title="Ask")
        return assistant_context_for_chat(chat=chat)

    context = await sync_to_async(prepare)()
    prompt = await context.system_prompt()
    assert "Gate" in prompt
    assert_no_secret(prompt)
    assert "gate.example.org" not in prompt
    for name, arguments in [
        ("list_events", {}),
        ("count_events", {}),
        ("activity", {"camera": "Gate"}),
    ]:
        answer = await context.data.call(name, arguments)
        assert "Gate" in answer or "person" in answer, answer
        assert_no_secret(answer)
        assert "gate.example.org" not in answer
    answer = await context.data.answer("what did Gate see in the last hour?") or ""
    assert_no_secret(answer)


# Sources whose secrets the URL parser misplaces or never masked, on a loopback port where nothing
# listens: opening them fails, and the reason is what every surface shows as last_error.
FAILING_SOURCES = [
    ("http://127.0.0.1:{port}/mjpeg?token=S3CRET", ("S3CRET",)),
    ("rtsp://admin:p@ss#word@127.0.0.1:{port}/", ("p@ss", "ss#word", "#word")),
    ("rtsp://127.0.0.1:{port}/user=admin&password=S3CRET&channel=1", ("S3CRET",)),
]


@pytest.mark.parametrize(("template", "secrets"), FAILING_SOURCES)
def test_a_failing_sources_last_error_holds_no_credentials_anywhere(
    template, secrets, loopback_cameras_allowed, bob, organization, alice_api, django_user_model
):
    source = template.format(port=closed_port())
    with pytest.raises(SourceError) as raised:
        open_source(source, read_timeout=1.0)
    reason = str(raised.value)
    assert reason.startswith(f"could not open {source_masked(source)}: "), reason
    camera = camera_create(organization=organization, name="Gate", source=source, enabled=False)
    # What the capture worker does with the reason (cameras.capture, _source_failed).
    camera_status_update(camera_pk=camera.pk, status=Camera.Status.OFFLINE, last_error=reason)

    def assert_hidden(text: str) -> None:
        for secret in secrets:
            assert secret not in text

    shown = reason.split(": ", 1)[0]
    viewer_api = _token_client(_role_user("viewer", bob, organization))
    for api in (viewer_api, alice_api):  # alice owns the organization
        detail = api.get(f"/api/v1/cameras/{camera.public_id}").json()
        assert detail["last_error"] == reason
        assert_hidden(detail["last_error"])
        assert_hidden(str(api.get("/api/v1/cameras").json()["results"][0]["last_error"]))
    pages = Client()
    pages.force_login(bob)
    for path in (f"/cameras/{camera.public_id}/", "/cameras/"):
        page = pages.get(path).content.decode()
        assert_hidden(page)
    django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    admin = Client()
    admin.login(username="root", password="root-password")
    # The site admin sees the source itself (superusers hold every secret), but not in the
    # reasons it reports, which are the same text every viewer gets.
    grabbed = admin.post(
        "/admin/cameras/camera/",
        {"action": "grab_test_frame", "_selected_action": [camera.pk]},
        follow=True,
    )
    [message] = [str(message) for message in grabbed.context["messages"]]
    assert message.startswith(f"Gate: {shown}"), message
    assert_hidden(message)
