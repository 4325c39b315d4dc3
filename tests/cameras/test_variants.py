"""Reduced stream variants (`/ws/stream/<id>?width=320&fps=5`), through the real ASGI
application: real JPEGs published to the camera's group, decoded again with OpenCV, the encode
count read from /metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import cv2
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from cameras.fanout import hub_variants, hub_viewer_count
from cameras.publishing import PublishedFrame, frame_broadcast, frame_remember
from cameras.variants import VARIANT_CLOSE_CODE, Variant
from cameras.vision.frames import parse_frame_data_binary
from project.asgi import application
from tests.cameras.conftest import jpeg_bytes, now_ms
from tests.cameras.test_stream import _connect, _refused, _session_headers, _token_headers

pytestmark = pytest.mark.django_db(transaction=True)

TILE = Variant(width=320, fps=5)
TILE_QUERY = "width=320&fps=5"
# A 640x480 frame whose one box is at (320, 240), 64x48 pixels of it.
FULL_BOX = {"class": "person", "confidence": 0.9, "bbox": [320, 240, 64, 48], "track_id": 7}


def _full_frame(camera, timestamp: int) -> PublishedFrame:
    return PublishedFrame.build(
        camera_id=camera.public_id,
        jpeg=jpeg_bytes(640, 480, seed=timestamp % 11),
        timestamp=timestamp,
        detections=[FULL_BOX],
    )


def _image(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the variant's JPEG does not decode"
    return image


def _binary(message: dict) -> tuple[dict, np.ndarray]:
    header, jpeg = parse_frame_data_binary(message["bytes"])
    return header, _image(jpeg)


def _encodes_from_metrics(camera, variant: Variant = TILE) -> float:
    response = Client().get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.content.decode()):
        if family.name == "sightline_variant_encodes":
            for sample in family.samples:
                labels = {"camera": camera.public_id, "variant": variant.label}
                if sample.name.endswith("_total") and sample.labels == labels:
                    return sample.value
    return 0.0


async def _encodes(camera) -> float:
    return await sync_to_async(_encodes_from_metrics)(camera)


async def _until(condition, what: str) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def _publish(camera, *, count: int, every: float) -> list[int]:
    layer = get_channel_layer()
    timestamps = []
    for _ in range(count):
        timestamp = now_ms()
        timestamps.append(timestamp)
        await frame_broadcast(layer, _full_frame(camera, timestamp))
        await asyncio.sleep(every)
    return timestamps


async def _drain(communicator: WebsocketCommunicator, seconds: float) -> list[dict]:
    """Every message sent within `seconds` (a receive that times out would end the consumer)."""
    await asyncio.sleep(seconds)
    messages = []
    while not await communicator.receive_nothing(timeout=0):
        messages.append(await communicator.receive_output(timeout=1))
    return messages


async def test_a_variant_viewer_gets_frames_of_its_width_with_boxes_in_its_pixels(
    alice, demo_camera
):
    # The cached frame comes at once, as for the full stream, but at the variant's size.
    await sync_to_async(frame_remember)(_full_frame(demo_camera, now_ms()))
    viewer = await _connect(
        f"/ws/stream/{demo_camera.public_id}?{TILE_QUERY}&format=binary",
        await _token_headers(alice),
    )
    header, image = _binary(await viewer.receive_output(timeout=5))
    assert image.shape == (240, 320, 3)
    assert header["detections"] == [{**FULL_BOX, "bbox": [160, 120, 32, 24]}]

    # Live frames too; the default format is the seed's FrameData JSON.
    text_viewer = await _connect(
        f"/ws/stream/{demo_camera.public_id}?width=160&fps=2", await _token_headers(alice)
    )
    await text_viewer.receive_from(timeout=5)  # the cached frame
    timestamp = now_ms()
    await frame_broadcast(get_channel_layer(), _full_frame(demo_camera, timestamp))
    message = json.loads(await text_viewer.receive_from(timeout=5))
    assert set(message) == {"frame", "timestamp", "camera_id", "detections"}
    assert message["timestamp"] == timestamp
    assert _image(base64.b64decode(message["frame"])).shape == (120, 160, 3)
    assert message["detections"][0]["bbox"] == [80, 60, 16, 12]
    await viewer.disconnect()
    await text_viewer.disconnect()


async def test_a_variant_never_sends_more_frames_than_its_rate(alice, demo_camera):
    viewer = await _connect(
        f"/ws/stream/{demo_camera.public_id}?{TILE_QUERY}&format=binary",
        await _token_headers(alice),
    )
    await _until(lambda: hub_variants(demo_camera.public_id), "the variant encoder started")
    started = time.monotonic()
    publishing = asyncio.create_task(_publish(demo_camera, count=60, every=0.05))  # 20 fps
    messages = await _drain(viewer, 3.0)
    seconds = time.monotonic() - started
    await publishing
    # 5 a second (one more for the frame a window may open on), and frames did flow.
    assert 8 <= len(messages) <= TILE.fps * seconds + 1
    timestamps = [parse_frame_data_binary(m["bytes"])[0]["timestamp"] for m in messages]
    assert timestamps == sorted(set(timestamps))
    await viewer.disconnect()


async def test_many_viewers_of_a_variant_cost_one_encode_per_frame(alice, bob, demo_camera):
    path = f"/ws/stream/{demo_camera.public_id}?{TILE_QUERY}&format=binary"
    viewers = [await _connect(path, await _token_headers(user)) for user in (alice, bob, alice)]
    await _until(lambda: hub_variants(demo_camera.public_id) == {TILE: 3}, "3 variant viewers")
    before = await _encodes(demo_camera)
    # Spaced wider than the variant's interval: every frame is the variant's next frame.
    timestamps = await _publish(demo_camera, count=4, every=TILE.interval_seconds + 0.1)
    for viewer in viewers:
        got = []
        while len(got) < len(timestamps):
            header, image = _binary(await viewer.receive_output(timeout=5))
            assert image.shape == (240, 320, 3)
            got.append(header["timestamp"])
        assert got == timestamps
    assert await _encodes(demo_camera) - before == len(timestamps)
    for viewer in viewers:
        await viewer.disconnect()


async def test_the_full_stream_is_untouched_by_variant_viewers(alice, demo_camera):
    headers = await _token_headers(alice)
    full = await _connect(f"/ws/stream/{demo_camera.public_id}?format=binary", headers)
    tile = await _connect(f"/ws/stream/{demo_camera.public_id}?{TILE_QUERY}&format=binary", headers)
    await _until(lambda: hub_viewer_count(demo_camera.public_id) == 2, "both viewers joined")
    layer = get_channel_layer()
    published = []
    for _ in range(10):
        frame = _full_frame(demo_camera, now_ms())
        published.append(frame)
        await frame_broadcast(layer, frame)
        await asyncio.sleep(0.05)
    for frame in published:
        header, jpeg = parse_frame_data_binary((await full.receive_output(timeout=5))["bytes"])
        # Every frame, the very bytes published, boxes as they were.
        assert header["timestamp"] == frame.timestamp
        assert jpeg == frame.jpeg
        assert header["detections"] == [FULL_BOX]
    assert 1 <= len(await _drain(tile, 0.5)) < len(published)
    await tile.disconnect()
    await full.disconnect()


@pytest.mark.parametrize(
    "query",
    [
        "width=100",
        "width=700",
        "width=330",
        "width=abc",
        "width=",
        "width=%EF%BC%93%EF%BC%92%EF%BC%90",  # full-width digits
        "fps=0",
        "fps=11",
        "fps=2.5",
        "width=320&width=640",
    ],
)
async def test_variant_values_outside_the_bounds_are_closed_with_4400(alice, demo_camera, query):
    communicator = WebsocketCommunicator(
        application, f"/ws/stream/{demo_camera.public_id}?{query}", await _token_headers(alice)
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == VARIANT_CLOSE_CODE
    assert "width must be" in closed["reason"] or "fps must be" in closed["reason"]
    await communicator.disconnect(timeout=5)
    assert hub_viewer_count(demo_camera.public_id) == 0


async def test_variant_viewers_are_refused_exactly_as_full_stream_viewers(
    alice, charlie, charlie_organization, demo_camera
):
    await sync_to_async(frame_remember)(_full_frame(demo_camera, now_ms()))
    path = f"/ws/stream/{demo_camera.public_id}?{TILE_QUERY}"
    await _refused(path, await _token_headers(charlie))
    await _refused(path, [(b"origin", b"http://127.0.0.1")])
    await _refused(path, await _session_headers("alice", b"https://evil.example.com"))
    # Access is checked before the values: a refused viewer learns nothing, not even 4400.
    await _refused(f"/ws/stream/{demo_camera.public_id}?width=1", await _token_headers(charlie))
    assert hub_viewer_count(demo_camera.public_id) == 0


async def test_the_variant_encoder_stops_when_its_last_viewer_leaves(alice, demo_camera):
    path = f"/ws/stream/{demo_camera.public_id}?{TILE_QUERY}&format=binary"
    first = await _connect(path, await _token_headers(alice))
    second = await _connect(path, await _token_headers(alice))
    other = await _connect(
        f"/ws/stream/{demo_camera.public_id}?width=160&fps=5", await _token_headers(alice)
    )
    await _until(lambda: len(hub_variants(demo_camera.public_id)) == 2, "two variants")
    await first.disconnect()
    await _until(lambda: hub_variants(demo_camera.public_id)[TILE] == 1, "one viewer left")
    await second.disconnect()
    await _until(lambda: TILE not in hub_variants(demo_camera.public_id), "the encoder stopped")
    before = await _encodes(demo_camera)
    await _publish(demo_camera, count=3, every=TILE.interval_seconds + 0.05)
    await _drain(other, 0.3)  # the other variant goes on
    assert await _encodes(demo_camera) == before
    await other.disconnect()
    await _until(lambda: not hub_viewer_count(demo_camera.public_id), "the hub stopped")
