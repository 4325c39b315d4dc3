"""What the streams report (SSE streams, replies, backend errors, viewers, frames a slow viewer
skips) and how a stream that cannot go on still ends. Runs on whichever layer the run uses."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection
from prometheus_client import REGISTRY

from cameras.fanout import Viewer, hub_join, hub_leave
from cameras.publishing import PublishedFrame, frame_broadcast
from cameras.services import camera_create
from chats.services import chat_create
from chats.streaming import follow
from project.asgi import application
from tests.cameras.conftest import jpeg_bytes, now_ms
from tests.chats.asgi_http import request, runs_finished
from tests.chats.fake_openai import FakeOpenAI, reply

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(condition, limit: float = 10) -> None:
    for _ in range(int(limit / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization)


@pytest.fixture(autouse=True)
def _fast_builtin(settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    settings.ASSISTANT_BACKEND = "builtin"


async def test_a_finished_reply_is_counted_and_its_stream_closed(chat, alice_api):
    streams = sample("sightline_sse_streams")
    complete = sample("sightline_replies_total", status="complete")
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": "hi"}
    )
    await stream.read_all()
    await runs_finished()
    assert stream.events()[-1]["status"] == "complete"
    assert sample("sightline_replies_total", status="complete") == complete + 1
    assert sample("sightline_sse_streams") == streams


async def test_a_failing_backend_is_counted_with_the_failed_reply(chat, alice_api, settings):
    server = FakeOpenAI().start()
    server.status, server.error_body = 500, {"error": {"message": "boom"}}
    settings.ASSISTANT_BACKEND, settings.OPENAI_BASE_URL = "openai", server.base_url
    errors = sample("sightline_backend_errors_total", backend="openai")
    failed = sample("sightline_replies_total", status="failed")
    try:
        stream = await request(
            "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": "hi"}
        )
        await stream.read_all()
        await runs_finished()
    finally:
        server.stop()
    assert [event["type"] for event in stream.events()][-2:] == ["error", "done"]
    assert sample("sightline_backend_errors_total", backend="openai") == errors + 1
    assert sample("sightline_replies_total", status="failed") == failed + 1


@sync_to_async
def rename_messages_table(old: str, new: str) -> None:
    # A real database failure: every read of a reply finds no table while it is renamed.
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")
    connection.close()


async def test_a_stream_whose_database_reads_fail_ends_failed_and_resumable_and_the_reply_goes_on(
    chat, alice_api, settings, fake_openai
):
    # The pause is silence: the stream reads the stored reply, and the table is away.
    fake_openai.script = reply("Alice", " and Bob", delay=3)
    settings.ASSISTANT_BACKEND, settings.OPENAI_BASE_URL = "openai", fake_openai.base_url
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": "hi"}
    )
    message_id = int(stream.headers["x-message-id"])
    await stream.read_until(b"Alice")
    await rename_messages_table("chats_message", "chats_message_away")
    try:
        await stream.read_all(limit=10)
    finally:
        await rename_messages_table("chats_message_away", "chats_message")
    # Final for the seed's clients, and never `streaming`: this stream failed, the reply may not.
    ending = (
        f'data: {{"type": "error", "message": "{follow.STREAM_FAILED_ERROR}"}}\n\n'
        f'data: {{"type": "done", "message_id": {message_id}, "status": "failed", "html": "",'
        ' "resumable": true}\n\n'
    )
    assert stream.body.endswith(ending.encode())

    # The run went on: read again from the offset held, the reply ends as stored.
    resumed = await request(
        "GET",
        f"/chats/{chat.pk}/messages/{message_id}/stream?offset={len(stream.text())}",
        token=alice_api.raw_token,
    )
    await resumed.read_all(limit=10)
    await runs_finished()
    assert stream.text() + resumed.text() == "Alice and Bob"
    assert resumed.events()[-1]["status"] == "complete"
    assert "resumable" not in resumed.events()[-1]


async def test_viewers_are_counted_per_camera_as_they_come_and_go(alice, alice_api, organization):
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Porch", source="push:"
    )
    headers = [(b"authorization", f"Bearer {alice_api.raw_token}".encode())]
    viewers = []
    for expected in (1, 2):
        viewer = WebsocketCommunicator(application, camera.stream_path, headers=headers)
        assert (await viewer.connect(timeout=5))[0]
        viewers.append(viewer)
        await eventually(
            lambda n=expected: sample("sightline_viewers", camera=camera.public_id) == n
        )
    for viewer in viewers:
        await viewer.disconnect()
    assert sample("sightline_viewers", camera=camera.public_id) == 0


async def test_frames_a_slow_viewer_skips_are_counted(organization):
    camera = await database_sync_to_async(camera_create)(
        organization=organization, name="Dock", source="push:"
    )
    sent: list[int] = []

    async def send_frame(frame: PublishedFrame) -> None:
        sent.append(frame.timestamp)

    # A connection that still holds far more than two frames: every frame waits in the slot.
    slow = Viewer(send_frame=send_frame, pending_bytes=lambda: 10**9, binary=True)
    skipped = _skipped(camera)
    await hub_join(camera.public_id, slow)
    try:
        first = now_ms()
        for index in range(4):
            frame = PublishedFrame.build(
                camera_id=camera.public_id,
                jpeg=jpeg_bytes(seed=index),
                timestamp=first + index,
                detections=None,
            )
            await frame_broadcast(get_channel_layer(), frame)
        # The first frame takes the slot, each of the three after it replaces an unsent one.
        await eventually(lambda: _skipped(camera) >= skipped + 3)
    finally:
        await hub_leave(camera.public_id, slow)
    assert _skipped(camera) == skipped + 3
    assert sent == []


def _skipped(camera) -> float:
    return sample("sightline_frames_dropped_total", camera=camera.public_id, reason="slow_viewer")
