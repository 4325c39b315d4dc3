"""The WebSocket stream, through the real ASGI application (auth middleware, routing, consumer)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from cameras.fanout import hub_viewer_count
from cameras.publishing import PublishedFrame, frame_broadcast, frame_remember
from cameras.vision.frames import parse_frame_data_binary
from organizations.services import api_token_create
from project.asgi import application
from tests.cameras.conftest import jpeg_bytes, now_ms

pytestmark = pytest.mark.django_db(transaction=True)


def _frame(camera, *, timestamp: int, detections=None) -> PublishedFrame:
    return PublishedFrame.build(
        camera_id=camera.public_id,
        jpeg=jpeg_bytes(seed=timestamp % 7),
        timestamp=timestamp,
        detections=detections,
    )


async def _token_headers(user) -> list[tuple[bytes, bytes]]:
    _, raw = await sync_to_async(api_token_create)(user=user)
    return [(b"authorization", f"Bearer {raw}".encode())]


async def _session_headers(username: str, origin: bytes) -> list[tuple[bytes, bytes]]:
    def login() -> str:
        client = Client()
        assert client.login(username=username, password=f"{username}-password")
        return client.cookies["sessionid"].value

    session = await sync_to_async(login)()
    return [(b"cookie", f"sessionid={session}".encode()), (b"origin", origin)]


async def _connect(path: str, headers, **kwargs) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers, **kwargs)
    connected, _ = await communicator.connect(timeout=5)
    assert connected, f"{path} was refused"
    return communicator


async def _until_subscribed(camera, viewers: int = 1) -> None:
    for _ in range(200):
        if hub_viewer_count(camera.public_id) >= viewers:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the viewer never joined the camera's hub")


async def _group_size(layer, group: str) -> int:
    if hasattr(layer, "groups"):  # InMemoryChannelLayer
        return len(layer.groups.get(group, {}))
    # channels-redis keeps a group as a sorted set of channel names.
    connection = layer.connection(layer.consistent_hash(group))
    return await connection.zcard(layer._group_key(group))


async def _refused(path: str, headers) -> None:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_it_sends_the_latest_frame_at_once_as_seed_frame_data(alice, demo_camera):
    timestamp = now_ms()
    await sync_to_async(frame_remember)(
        _frame(
            demo_camera,
            timestamp=timestamp,
            detections=[{"class": "motion", "confidence": 0.9, "bbox": [1, 2, 3, 4]}],
        )
    )
    communicator = await _connect(
        f"/ws/stream/{demo_camera.public_id}", await _token_headers(alice)
    )
    message = json.loads(await communicator.receive_from(timeout=5))
    assert set(message) == {"frame", "timestamp", "camera_id", "detections"}
    assert message["timestamp"] == timestamp
    assert message["camera_id"] == demo_camera.public_id
    assert message["detections"] == [{"class": "motion", "confidence": 0.9, "bbox": [1, 2, 3, 4]}]
    import base64

    assert base64.b64decode(message["frame"]).startswith(b"\xff\xd8")
    await communicator.disconnect()


async def test_it_streams_broadcast_frames_and_omits_detections_when_none_ran(alice, demo_camera):
    communicator = await _connect(
        f"/ws/stream/{demo_camera.public_id}/", await _token_headers(alice)
    )
    await _until_subscribed(demo_camera)
    assert await communicator.receive_nothing(timeout=0.1)
    timestamp = now_ms()
    await frame_broadcast(get_channel_layer(), _frame(demo_camera, timestamp=timestamp))
    message = json.loads(await communicator.receive_from(timeout=5))
    assert message["timestamp"] == timestamp
    assert "detections" not in message
    await communicator.disconnect()
    await asyncio.sleep(0)
    assert hub_viewer_count(demo_camera.public_id) == 0


async def test_many_viewers_share_one_subscription_and_all_get_the_frame(alice, bob, demo_camera):
    path = f"/ws/stream/{demo_camera.public_id}"
    viewers = [
        await _connect(path, await _token_headers(alice)),
        await _connect(path, await _token_headers(bob)),
        await _connect(path, await _token_headers(alice)),
    ]
    await _until_subscribed(demo_camera, viewers=3)
    layer = get_channel_layer()
    # One channel in the camera's group for the whole process, however many viewers.
    assert await _group_size(layer, f"camera_{demo_camera.public_id}") == 1
    timestamp = now_ms()
    await frame_broadcast(layer, _frame(demo_camera, timestamp=timestamp))
    for viewer in viewers:
        assert json.loads(await viewer.receive_from(timeout=5))["timestamp"] == timestamp
        await viewer.disconnect()


async def test_binary_format_carries_the_jpeg_without_base64(alice, demo_camera):
    timestamp = now_ms()
    frame = _frame(demo_camera, timestamp=timestamp, detections=[])
    await sync_to_async(frame_remember)(frame)
    communicator = await _connect(
        f"/ws/stream/{demo_camera.public_id}?format=binary", await _token_headers(alice)
    )
    message = await communicator.receive_output(timeout=5)
    header, jpeg = parse_frame_data_binary(message["bytes"])
    assert header == {"timestamp": timestamp, "camera_id": demo_camera.public_id, "detections": []}
    assert jpeg == frame.jpeg
    await communicator.disconnect()


async def test_binary_subprotocol_is_accepted_and_echoed(alice, demo_camera):
    communicator = await _connect(
        f"/ws/stream/{demo_camera.public_id}",
        await _token_headers(alice),
        subprotocols=["sightline.binary"],
    )
    await _until_subscribed(demo_camera)
    await frame_broadcast(get_channel_layer(), _frame(demo_camera, timestamp=now_ms()))
    message = await communicator.receive_output(timeout=5)
    assert "bytes" in message
    await communicator.disconnect()


async def test_garbage_from_the_client_is_ignored(alice, demo_camera):
    communicator = await _connect(
        f"/ws/stream/{demo_camera.public_id}", await _token_headers(alice)
    )
    await _until_subscribed(demo_camera)
    await communicator.send_to(text_data="{not json")
    await communicator.send_to(bytes_data=b"\x00\xff" * 1000)
    assert await communicator.receive_nothing(timeout=0.1)
    timestamp = now_ms()
    await frame_broadcast(get_channel_layer(), _frame(demo_camera, timestamp=timestamp))
    assert json.loads(await communicator.receive_from(timeout=5))["timestamp"] == timestamp
    await communicator.disconnect()


async def test_session_with_allowed_origin_is_accepted(alice, demo_camera):
    headers = await _session_headers("alice", b"http://127.0.0.1:8000")
    communicator = await _connect(f"/ws/stream/{demo_camera.public_id}", headers)
    await communicator.disconnect()


async def test_session_with_foreign_origin_is_refused(alice, demo_camera):
    await _refused(
        f"/ws/stream/{demo_camera.public_id}",
        await _session_headers("alice", b"https://evil.example.com"),
    )


async def test_session_without_origin_is_refused(alice, demo_camera):
    headers = await _session_headers("alice", b"")
    await _refused(f"/ws/stream/{demo_camera.public_id}", headers[:1])


async def test_anonymous_viewer_is_refused_and_gets_nothing(demo_camera):
    await sync_to_async(frame_remember)(_frame(demo_camera, timestamp=now_ms()))
    await _refused(f"/ws/stream/{demo_camera.public_id}", [(b"origin", b"http://127.0.0.1")])


async def test_bad_token_is_refused(demo_camera):
    await _refused(f"/ws/stream/{demo_camera.public_id}", [(b"authorization", b"Bearer sl_nope")])


async def test_charlie_is_refused_alices_camera(charlie, charlie_organization, demo_camera):
    await sync_to_async(frame_remember)(_frame(demo_camera, timestamp=now_ms()))
    await _refused(f"/ws/stream/{demo_camera.public_id}", await _token_headers(charlie))


async def test_unknown_camera_is_refused(alice, organization):
    await _refused("/ws/stream/nosuchcamera", await _token_headers(alice))
