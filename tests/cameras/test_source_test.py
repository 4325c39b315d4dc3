"""Test source against real sources: a demo scene and a video file give a real JPEG, refused and
unreachable sources say why, and the endpoint is for admins only and rate-limited per user."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from django.test import Client

from tests.cameras.test_camera_form import write_video
from tests.conftest import free_port, start_with_room_in_the_window

pytestmark = pytest.mark.django_db

URL = "/cameras/source-test"


@pytest.fixture
def alice_client(alice, organization) -> Client:
    client = Client()
    client.login(username="alice", password="alice-password")
    return client


def decoded(response) -> np.ndarray:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "no-store"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def failure(response, status: int, code: str) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    return body["error"]


def test_a_demo_source_gives_a_real_jpeg_of_the_scene(alice_client, organization):
    image = decoded(alice_client.post(URL, {"organization": organization.pk, "source": "demo:"}))
    assert image.shape == (480, 640, 3)
    assert image.std() > 10  # a scene, not a blank picture


def test_the_frame_is_scaled_to_the_forms_max_width(alice_client, organization):
    response = alice_client.post(
        URL, {"organization": organization.pk, "source": "demo:x", "max_width": "320"}
    )
    assert decoded(response).shape == (240, 320, 3)


def test_a_video_file_source_gives_its_first_frame(alice_client, organization, tmp_path):
    video = write_video(tmp_path / "yard.avi", size=(320, 240))
    image = decoded(alice_client.post(URL, {"organization": organization.pk, "source": video}))
    assert image.shape == (240, 320, 3)
    # The first frame's orange disc, where write_video drew it.
    blue, green, red = image[120, 20]
    assert red > 200 and green > 150 and blue < 80


def test_a_file_that_is_not_a_video_says_so(alice_client, organization, tmp_path):
    path = tmp_path / "notes.avi"
    path.write_bytes(b"these are not frames" * 100)
    message = failure(
        alice_client.post(URL, {"organization": organization.pk, "source": str(path)}),
        422,
        "unreadable",
    )
    assert message == f"could not open {path}: not a video file OpenCV can read"


def test_a_loopback_address_is_refused_by_the_policy_without_connecting(alice_client, organization):
    for source in ("rtsp://127.0.0.1:554/stream", "http://localhost:8080/mjpeg"):
        message = failure(
            alice_client.post(URL, {"organization": organization.pk, "source": source}),
            422,
            "refused_by_policy",
        )
        assert message == (
            "not allowed by policy (an administrator can allow it with CAMERA_ALLOWED_NETWORKS)"
        )


def test_a_closed_port_on_an_allowed_loopback_says_connection_refused(
    alice_client, organization, loopback_cameras_allowed
):
    port = free_port()  # bound and released: nothing listens there
    message = failure(
        alice_client.post(
            URL, {"organization": organization.pk, "source": f"http://127.0.0.1:{port}/mjpeg"}
        ),
        422,
        "unreadable",
    )
    assert message == f"could not open http://127.0.0.1:{port}/mjpeg: connection refused"


def test_a_push_source_explains_there_is_nothing_to_read(alice_client, organization):
    message = failure(
        alice_client.post(URL, {"organization": organization.pk, "source": "push:"}),
        422,
        "push_source",
    )
    assert "frames arrive through the ingest API" in message


def test_a_bad_spec_is_answered_in_words(alice_client, organization):
    message = failure(
        alice_client.post(URL, {"organization": organization.pk, "source": "ftp://x/y"}),
        422,
        "unreadable",
    )
    assert message.startswith("unsupported source: use rtsp://")


def test_tests_are_rate_limited_per_user(alice_client, bob, organization, settings):
    settings.CAMERA_SOURCE_TESTS_PER_MINUTE = 2
    start_with_room_in_the_window(5, window=60)  # Alice's four tests in one minute
    data = {"organization": organization.pk, "source": "push:"}
    assert [alice_client.post(URL, data).status_code for _ in range(2)] == [422, 422]
    limited = alice_client.post(URL, data)
    assert failure(limited, 429, "rate_limited").startswith("Too many source tests: try again in")
    assert 1 <= int(limited["Retry-After"]) <= 60
    # Even a source the policy refuses costs a test: nothing may be probed for free.
    refused = alice_client.post(URL, {**data, "source": "rtsp://127.0.0.1/x"})
    assert refused.status_code == 429

    # Per user: another admin still has their own.
    from organizations.services import membership_add

    carol = type(bob).objects.create_user("carol", "carol@example.org", "carol-password")
    membership_add(organization=organization, user=carol, role="admin")
    other = Client()
    other.login(username="carol", password="carol-password")
    assert other.post(URL, data).status_code == 422


def test_only_admins_of_the_organization_may_test(
    bob, organization, charlie_organization, alice_client
):
    bob_client = Client()
    bob_client.login(username="bob", password="bob-password")
    message = failure(
        bob_client.post(URL, {"organization": organization.pk, "source": "demo:"}),
        403,
        "forbidden",
    )
    assert message.startswith("Only admins and owners may add, change and delete cameras")
    failure(
        alice_client.post(URL, {"organization": charlie_organization.pk, "source": "demo:"}),
        404,
        "not_found",
    )
    assert Client().post(URL, {"organization": organization.pk, "source": "demo:"}).status_code in (
        401,
        403,
    )


def test_the_csrf_token_is_required(alice, organization):
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password="alice-password")
    refused = client.post(URL, {"organization": organization.pk, "source": "demo:"})
    assert failure(refused, 403, "csrf_failed").startswith("CSRF check failed")
    client.get("/cameras/add/")
    token = client.cookies["csrftoken"].value
    decoded(
        client.post(
            URL,
            {"organization": organization.pk, "source": "demo:"},
            headers={"X-CSRFToken": token},
        )
    )


def test_malformed_and_oversized_requests_are_refused(alice_client, organization, settings):
    assert alice_client.get(URL).status_code == 405
    assert "source: This field is required." in failure(
        alice_client.post(URL, {"organization": organization.pk}), 400, "invalid"
    )
    assert "organization: Enter a whole number." in failure(
        alice_client.post(URL, {"organization": "x", "source": "demo:"}), 400, "invalid"
    )
    assert "at most 1000 characters" in failure(
        alice_client.post(URL, {"organization": organization.pk, "source": "demo:" + "a" * 996}),
        400,
        "invalid",
    )
    assert "max_width: Ensure this value is less than or equal to 3840." in failure(
        alice_client.post(
            URL, {"organization": organization.pk, "source": "demo:", "max_width": "99999"}
        ),
        400,
        "invalid",
    )
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    failure(
        alice_client.post(URL, {"organization": organization.pk, "source": "x" * 2000}),
        413,
        "too_large",
    )
