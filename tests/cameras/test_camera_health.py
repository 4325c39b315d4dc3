"""Each camera's health for people, in /api/v1/cameras and on the cameras pages: capture state
from its worker's heartbeat (a real supervisor capturing the demo scene), push: cameras from
what ingest wrote, the recorder's state from its heartbeat; one cache read for a whole list."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cameras.capture import CameraSupervisor
from cameras.models import Camera
from cameras.services import camera_create, camera_status_update
from project.heartbeats import heartbeat_beat
from tests.cameras.conftest import jpeg_b64, now_ms

HEALTH_FIELDS = {
    "capture",
    "measured_fps",
    "last_frame_at",
    "last_frame_age_seconds",
    "last_error",
    "recorder",
    "last_event_at",
    "last_event_age_seconds",
}


@pytest.fixture
def alice_client(client, alice, organization):
    client.login(username="alice", password="alice-password")
    return client


@pytest.mark.django_db(transaction=True)
async def test_a_capturing_camera_is_online_with_its_measured_fps(alice_api, demo_camera):
    supervisor = CameraSupervisor(reload_seconds=0.2)
    run = asyncio.create_task(supervisor.run())
    try:
        deadline = time.monotonic() + 15
        while True:
            body = (await sync_to_async(alice_api.get)("/api/v1/cameras")).json()
            health = body["results"][0]["health"]
            if health["capture"] == "online" and health["measured_fps"]:
                break
            assert time.monotonic() < deadline, health
            await asyncio.sleep(0.2)
        detail = (
            await sync_to_async(alice_api.get)(f"/api/v1/cameras/{demo_camera.public_id}")
        ).json()
    finally:
        await supervisor.stop()
        await run
    camera = body["results"][0]
    # The fields clients already read are still there, unchanged.
    assert camera["id"] == demo_camera.public_id and camera["status"] == "online"
    assert set(health) == HEALTH_FIELDS
    assert health["measured_fps"] > 1
    assert health["last_frame_age_seconds"] < 3
    assert health["last_frame_at"].endswith("Z")
    assert health["last_error"] == ""
    assert health["recorder"] == "not recording"  # EVENTS_RECORDING is off in tests
    assert detail["health"]["capture"] == "online"


@pytest.mark.django_db
def test_a_camera_without_a_worker_is_offline_whatever_its_last_status(
    alice_api, demo_camera, settings
):
    settings.CAMERAS_IN_PROCESS = False
    # A worker wrote "online" a second before its process was killed: the column stays so.
    camera_status_update(camera_pk=demo_camera.pk, status=Camera.Status.ONLINE, measured_fps=9.5)
    Camera.objects.filter(pk=demo_camera.pk).update(updated_at="2026-01-01T00:00:00Z")
    body = alice_api.get(f"/api/v1/cameras/{demo_camera.public_id}").json()
    assert body["status"] == "online"
    assert body["health"]["capture"] == "offline"
    assert body["health"]["measured_fps"] == 0.0
    assert "is `manage.py runcameras` running?" in body["health"]["last_error"]


@pytest.mark.django_db
def test_a_camera_just_added_is_connecting_until_the_supervisor_picks_it_up(alice_api):
    body = alice_api.post(
        "/api/v1/cameras", {"name": "New", "source": "demo:new"}, format="json"
    ).json()
    assert body["health"]["capture"] == "connecting"
    assert body["health"]["last_frame_at"] is None


@pytest.mark.django_db
def test_a_disabled_camera_says_so(alice_api, demo_camera):
    body = alice_api.patch(
        f"/api/v1/cameras/{demo_camera.public_id}", {"enabled": False}, format="json"
    ).json()
    assert body["health"]["capture"] == "disabled"
    assert body["health"]["recorder"] == "not recording"


@pytest.mark.django_db(transaction=True)
def test_a_push_camera_waits_for_a_publisher_then_is_online_with_pushed_frames(
    alice_api, push_camera
):
    health = alice_api.get(f"/api/v1/cameras/{push_camera.public_id}").json()["health"]
    assert health["capture"] == "offline"
    assert health["last_error"] == "Waiting for a publisher: no frame has been pushed yet."
    response = alice_api.post(
        "/api/v1/actions/actions/send",
        {
            "streamName": "test",
            "streamType": "frame",
            "frame": jpeg_b64(),
            "timestamp": now_ms(),
            "camera_id": push_camera.public_id,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    health = alice_api.get(f"/api/v1/cameras/{push_camera.public_id}").json()["health"]
    assert health["capture"] == "online"
    assert health["last_frame_age_seconds"] < 3


@pytest.mark.django_db
def test_a_push_camera_whose_publisher_stopped_is_offline(alice_api, push_camera, settings):
    settings.CAMERA_OFFLINE_AFTER_SECONDS = 5
    camera_status_update(
        camera_pk=push_camera.pk,
        status=Camera.Status.ONLINE,
        last_frame_at=Camera.objects.get(pk=push_camera.pk).created_at.replace(year=2025),
    )
    health = alice_api.get(f"/api/v1/cameras/{push_camera.public_id}").json()["health"]
    assert health["capture"] == "offline"
    assert health["last_error"] == "No frame has been pushed for 5 s."


@pytest.mark.django_db
def test_the_recorder_state_and_last_event_come_from_its_heartbeat(
    alice_api, demo_camera, push_camera, settings
):
    settings.EVENTS_RECORDING = True
    # What the events recorder leaves for each camera at its flushes.
    heartbeat_beat(
        f"recorder:{demo_camera.public_id}",
        ttl=30,
        state="paused",
        reason="the database is unavailable",
        last_event_at=time.time() - 120,
    )
    heartbeat_beat(
        f"recorder:{push_camera.public_id}", ttl=30, state="recording", last_event_at=None
    )
    results = {c["id"]: c["health"] for c in alice_api.get("/api/v1/cameras").json()["results"]}
    paused, recording = results[demo_camera.public_id], results[push_camera.public_id]
    assert paused["recorder"] == "paused: the database is unavailable"
    assert 119 <= paused["last_event_age_seconds"] <= 125
    assert recording["recorder"] == "recording"
    assert recording["last_event_at"] is None
    settings.EVENTS_RECORDING = False
    results = {c["id"]: c["health"] for c in alice_api.get("/api/v1/cameras").json()["results"]}
    assert results[demo_camera.public_id]["recorder"] == "not recording"


@pytest.mark.django_db
def test_the_list_reads_health_for_any_number_of_cameras_in_the_same_queries(
    alice_api, organization
):
    camera_create(organization=organization, name="One", source="demo:one")
    alice_api.get("/api/v1/cameras")  # the token's first use is written once
    with CaptureQueriesContext(connection) as one:
        assert alice_api.get("/api/v1/cameras").status_code == 200
    for index in range(4):
        camera_create(organization=organization, name=f"More {index}", source=f"demo:{index}")
    with CaptureQueriesContext(connection) as five:
        response = alice_api.get("/api/v1/cameras")
    assert len(response.json()["results"]) == 5
    assert all(camera["health"]["capture"] for camera in response.json()["results"])
    assert len(five) == len(one)


@pytest.mark.django_db
def test_charlie_sees_the_health_of_his_cameras_only(
    charlie_api, demo_camera, charlie_camera, settings
):
    settings.EVENTS_RECORDING = True
    heartbeat_beat(f"recorder:{demo_camera.public_id}", ttl=30, state="recording")
    results = charlie_api.get("/api/v1/cameras").json()["results"]
    assert [camera["id"] for camera in results] == [charlie_camera.public_id]
    assert results[0]["health"]["recorder"] == "not recording"
    assert charlie_api.get(f"/api/v1/cameras/{demo_camera.public_id}").status_code == 404


@pytest.mark.django_db
def test_the_cameras_page_shows_each_cameras_health(
    alice_client, demo_camera, push_camera, charlie_camera, settings
):
    settings.EVENTS_RECORDING = True
    heartbeat_beat(
        f"capture:{demo_camera.public_id}",
        ttl=30,
        state="online",
        fps=9.84,
        last_frame_at=time.time() - 2,
        last_error="",
    )
    heartbeat_beat(
        f"recorder:{demo_camera.public_id}",
        ttl=30,
        state="recording",
        last_event_at=time.time() - 180,
    )
    html = alice_client.get("/cameras/").content.decode()
    assert "Capture: <strong>online</strong> at 9.8 fps" in html
    assert "last frame <time" in html and ">2 s ago</time>" in html
    assert "Recorder: <strong>recording</strong>" in html
    assert ">3 min ago</time>" in html
    assert 'class="badge online"' in html
    assert "Waiting for a publisher" in html  # the push camera nobody feeds
    assert "Charlie" not in html


@pytest.mark.django_db
def test_the_camera_page_shows_its_health(alice_client, demo_camera):
    response = alice_client.get(f"/cameras/{demo_camera.public_id}/")
    assert response.status_code == 200
    assert response.context["health"].capture == "connecting"
    html = response.content.decode()
    assert "Capture: <strong>connecting</strong>" in html
    assert "no frame yet" in html
    assert "Recorder: <strong>not recording</strong>" in html
