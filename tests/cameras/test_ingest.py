"""POST /api/v1/actions/actions/send: the seed's frame ingest."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from cameras.fanout import hub_viewer_count
from cameras.models import Camera
from cameras.publishing import (
    PublishedFrame,
    frame_record_get,
    frame_remember,
    latest_frame_get,
)
from cameras.services import camera_create
from cameras.vision.frames import decode_jpeg
from organizations.services import api_token_create, membership_add
from project.asgi import application
from tests.cameras.conftest import jpeg_b64, jpeg_bytes, now_ms
from tests.conftest import _token_client
from tests.vision.test_sources import write_numbered_video

URL = "/api/v1/actions/actions/send"


def body(camera, **overrides) -> dict:
    return {
        "streamName": "webcam",
        "streamType": "frame",
        "frame": jpeg_b64(),
        "timestamp": now_ms(),
        "camera_id": camera.public_id,
        **overrides,
    }


def post(client, data) -> tuple[int, dict]:
    raw = data if isinstance(data, str | bytes) else json.dumps(data)
    response = client.post(URL, raw, content_type="application/json")
    return response.status_code, response.json()


def assert_nothing_changed(camera: Camera, timestamp: int | None = None) -> None:
    assert latest_frame_get(camera.public_id) is None
    if timestamp is not None:
        assert frame_record_get(camera.public_id, timestamp) is None
    fresh = Camera.objects.get(pk=camera.pk)
    assert (fresh.status, fresh.last_frame_at) == ("connecting", None)


@pytest.mark.django_db
def test_a_new_frame_for_a_push_camera_is_detected_recorded_and_kept(alice_api, push_camera):
    timestamp = now_ms()
    status, answer = post(alice_api, body(push_camera, timestamp=timestamp))
    assert status == 200, answer
    assert answer == {
        "camera_id": push_camera.public_id,
        "timestamp": timestamp,
        "detections": [],  # the first frame only teaches the motion model its background
        "duplicate": False,
    }
    latest = latest_frame_get(push_camera.public_id)
    assert latest.timestamp == timestamp
    assert decode_jpeg(latest.jpeg).shape == (240, 320, 3)
    assert frame_record_get(push_camera.public_id, timestamp) == {"detections": []}
    push_camera.refresh_from_db()
    assert push_camera.status == "online"
    assert push_camera.last_frame_at is not None


@pytest.mark.django_db
def test_motion_is_found_across_pushed_frames(alice_api, push_camera):
    found = []
    start = now_ms()
    for index in range(12):
        status, answer = post(
            alice_api,
            body(
                push_camera,
                frame=jpeg_b64(seed=index if index < 6 else index * 2),
                timestamp=start + index,
            ),
        )
        assert status == 200, answer
        found.extend(answer["detections"])
    assert any(detection["class"] == "motion" for detection in found)


@pytest.mark.django_db
def test_wide_frames_are_resized_to_the_cameras_max_width(alice_api, push_camera):
    push_camera.max_width = 160
    push_camera.save()
    timestamp = now_ms()
    status, _ = post(alice_api, body(push_camera, frame=jpeg_b64(width=640, height=480)))
    assert status == 200
    assert decode_jpeg(latest_frame_get(push_camera.public_id).jpeg).shape == (120, 160, 3)
    assert timestamp


@pytest.mark.django_db
def test_a_data_url_frame_is_accepted(alice_api, push_camera):
    data_url = "data:image/jpeg;base64," + jpeg_b64()
    assert post(alice_api, body(push_camera, frame=data_url))[0] == 200


@pytest.mark.django_db
def test_a_frame_the_camera_published_is_a_duplicate_with_its_detections(alice_api, demo_camera):
    timestamp = now_ms()
    detections = [{"class": "motion", "confidence": 0.7, "bbox": [5, 6, 7, 8]}]
    frame_remember(
        PublishedFrame.build(
            camera_id=demo_camera.public_id,
            jpeg=jpeg_bytes(),
            timestamp=timestamp,
            detections=detections,
        )
    )
    status, answer = post(alice_api, body(demo_camera, timestamp=timestamp))
    assert status == 200
    assert answer == {
        "camera_id": demo_camera.public_id,
        "timestamp": timestamp,
        "detections": detections,
        "duplicate": True,
    }


@pytest.mark.django_db
def test_a_new_frame_for_a_camera_reading_its_own_source_is_409(alice_api, demo_camera):
    timestamp = now_ms()
    status, answer = post(alice_api, body(demo_camera, timestamp=timestamp))
    assert status == 409
    assert answer["code"] == "not_a_push_camera"
    assert "only push: cameras accept new frames" in answer["error"]
    assert_nothing_changed(demo_camera, timestamp)


@pytest.mark.django_db
def test_a_viewer_learns_nothing_of_a_file_cameras_source_and_members_only_its_kind(
    alice_api, bob, organization, tmp_path
):
    video = tmp_path / "secret-site" / "yard.avi"
    video.parent.mkdir()
    write_numbered_video(video)
    camera = camera_create(organization=organization, name="Yard", source=str(video), enabled=False)
    membership_add(organization=organization, user=bob, role="viewer")
    viewer = _token_client(bob)
    timestamp = now_ms()
    status, answer = post(viewer, body(camera, timestamp=timestamp))
    assert (status, answer["code"]) == (403, "forbidden")
    assert "secret-site" not in json.dumps(answer)
    # A frame the camera published is still answered to a viewer (the seed's player forwards
    # every frame it shows).
    frame_remember(
        PublishedFrame.build(
            camera_id=camera.public_id, jpeg=jpeg_bytes(), timestamp=timestamp, detections=[]
        )
    )
    status, answer = post(viewer, body(camera, timestamp=timestamp))
    assert (status, answer["duplicate"]) == (200, True)
    # A member may publish, so is told why this camera takes no new frames: its kind, no path.
    status, answer = post(alice_api, body(camera, timestamp=now_ms() + 1))
    assert (status, answer["code"]) == (409, "not_a_push_camera")
    assert "(file)" in answer["error"]
    assert "secret-site" not in json.dumps(answer) and "yard" not in json.dumps(answer)


@pytest.mark.django_db
def test_a_new_frame_older_than_the_record_window_is_409(alice_api, push_camera, settings):
    settings.CAMERA_FRAME_RECORD_SECONDS = 60
    timestamp = now_ms() - 61_000
    status, answer = post(alice_api, body(push_camera, timestamp=timestamp))
    assert (status, answer["code"]) == (409, "stale_timestamp")
    assert_nothing_changed(push_camera, timestamp)


def _bad_bodies(camera) -> list[tuple[object, str]]:
    truncated = jpeg_bytes()[:-300]
    return [
        ("{not json", "malformed"),
        ("[1, 2]", "malformed"),
        ({k: v for k, v in body(camera).items() if k != "frame"}, "missing_fields"),
        ({k: v for k, v in body(camera).items() if k != "camera_id"}, "missing_fields"),
        (body(camera, frame=123), "invalid_field"),
        (body(camera, camera_id=["x"]), "invalid_field"),
        (body(camera, streamType="video"), "invalid_stream_type"),
        (body(camera, timestamp="1700000000000"), "invalid_timestamp"),
        (body(camera, timestamp=1.7e12 + 0.5), "invalid_timestamp"),
        (body(camera, timestamp=True), "invalid_timestamp"),
        (body(camera, timestamp=1700000000), "invalid_timestamp"),  # seconds, not ms
        (body(camera, timestamp=now_ms() + 10 * 86_400_000), "future_timestamp"),
        (body(camera, frame=""), "invalid_base64"),
        (body(camera, frame="not base64 at all!"), "invalid_base64"),
        (body(camera, frame=base64.b64encode(b"GIF89a not a jpeg").decode()), "invalid_jpeg"),
        (body(camera, frame=base64.b64encode(truncated).decode()), "invalid_jpeg"),
    ]


@pytest.mark.django_db
def test_every_bad_input_is_a_clear_400_and_changes_nothing(alice_api, push_camera):
    for bad, code in _bad_bodies(push_camera):
        status, answer = post(alice_api, bad)
        assert (status, answer["code"]) == (400, code), bad if isinstance(bad, str) else code
        assert answer["error"]
    assert_nothing_changed(push_camera)


@pytest.mark.django_db
def test_an_oversized_body_is_413_before_decoding(alice_api, push_camera, settings):
    settings.CAMERA_INGEST_MAX_BYTES = 2048
    timestamp = now_ms()
    status, answer = post(
        alice_api, body(push_camera, frame=jpeg_b64(width=640, height=480), timestamp=timestamp)
    )
    assert status == 413
    assert answer["code"] == "too_large"
    assert "2048 bytes" in answer["error"]
    assert_nothing_changed(push_camera, timestamp)


@pytest.mark.django_db
def test_too_many_new_frames_a_second_is_429(alice_api, push_camera, settings):
    settings.CAMERA_INGEST_MAX_FRAMES_PER_SECOND = 2
    if time.time() % 1 > 0.6:  # all three posts must fall in the same second
        time.sleep(1 - time.time() % 1)
    start = now_ms()
    codes = [post(alice_api, body(push_camera, timestamp=start + n))[0] for n in range(3)]
    assert codes == [200, 200, 429]


@pytest.mark.django_db
def test_unauthenticated_is_401(client, push_camera):
    status, answer = post(client, body(push_camera))
    assert status == 401
    assert answer["code"] == "not_authenticated"
    assert_nothing_changed(push_camera)


@pytest.mark.django_db
def test_session_without_csrf_token_is_403(alice, push_camera):
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password="alice-password")
    status, answer = post(client, body(push_camera))
    assert status == 403
    assert answer["code"] == "csrf_failed"
    assert_nothing_changed(push_camera)


@pytest.mark.django_db
def test_charlie_gets_404_for_alices_camera_and_changes_nothing(charlie_api, push_camera):
    timestamp = now_ms()
    status, answer = post(charlie_api, body(push_camera, timestamp=timestamp))
    assert (status, answer["code"]) == (404, "not_found")
    assert_nothing_changed(push_camera, timestamp)


@pytest.mark.django_db
def test_unknown_camera_is_404(alice_api, organization):
    status, answer = post(alice_api, {**body(Camera(public_id="nosuchcamera"))})
    assert (status, answer["code"]) == (404, "not_found")


@pytest.mark.django_db
def test_get_is_405_json(alice_api, push_camera):
    response = alice_api.get(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"


# -- through the real ASGI application, with a viewer on the WebSocket ----------------------


@pytest.mark.django_db(transaction=True)
async def test_a_pushed_frame_reaches_viewers_once_however_often_it_is_forwarded(
    alice, push_camera
):
    _, raw = await sync_to_async(api_token_create)(user=alice)
    auth = {"Authorization": f"Bearer {raw}"}
    viewer = WebsocketCommunicator(
        application,
        f"/ws/stream/{push_camera.public_id}",
        headers=[(b"authorization", f"Bearer {raw}".encode())],
    )
    assert (await viewer.connect(timeout=5))[0]
    for _ in range(200):
        if hub_viewer_count(push_camera.public_id):
            break
        await sync_to_async(time.sleep)(0.01)

    timestamp = now_ms()
    payload = body(push_camera, timestamp=timestamp)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        first = await http.post(URL, json=payload, headers=auth)
        assert first.status_code == 200, first.text
        assert first.json()["duplicate"] is False
        # What the seed's player does with every frame it receives: post it back, many times.
        for _ in range(3):
            again = await http.post(URL, json=payload, headers=auth)
            assert again.status_code == 200
            assert again.json() == {**first.json(), "duplicate": True}

    message = json.loads(await viewer.receive_from(timeout=5))
    assert message["timestamp"] == timestamp
    assert message["camera_id"] == push_camera.public_id
    assert message["detections"] == []
    assert base64.b64decode(message["frame"]) == base64.b64decode(payload["frame"])
    # Exactly one frame: the duplicates were not broadcast.
    assert await viewer.receive_nothing(timeout=0.3)
    await viewer.disconnect()
