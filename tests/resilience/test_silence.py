"""With Redis as the channel layer, no silence ends a long-lived receive.

redis-py's default socket timeout (5 s) equals channels-redis's blocking BZPOPMIN (5 s): before
the fix, any channel silent for ~5 s raised TimeoutError out of `layer.receive()`, ending the
SSE response of a slow model without `done` and a camera hub's video for good.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import websockets.sync.client
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from cameras.services import camera_create
from chats.services import chat_create
from organizations.services import api_token_create
from project.channel_layer import GroupReceiver
from tests.chats.fake_openai import chunk
from tests.resilience.conftest import drain, publish_frames, publish_until_seen, sse_events

pytestmark = pytest.mark.redis


async def test_a_receive_outlives_a_socket_timeout_shorter_than_the_blocking_poll(redis_url):
    # The race, made certain: the socket gives up (2 s) before BZPOPMIN returns (5 s).
    layer = RedisChannelLayer(hosts=[{"address": redis_url, "socket_timeout": 2}])
    receiver = GroupReceiver(layer, where="test", groups=["resilience_silence"])
    await receiver.join()
    try:
        assert await receiver.receive(within=3) is None  # silence: nothing yet, no error
        await layer.group_send("resilience_silence", {"type": "after.silence"})
        assert await receiver.receive(within=5) == {"type": "after.silence"}
    finally:
        await receiver.close()
        await layer.close_pools()


def test_the_layer_socket_timeout_outlasts_the_blocking_poll():
    if "channels_redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("the channel layer is not Redis in this run (REDIS_URL is not set)")
    (host,) = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout


def test_a_model_pausing_6_and_20_seconds_between_pieces_still_ends_in_done(
    live_daphne, redis_url, fake_openai, alice, organization
):
    fake_openai.script = [
        ("data", {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        chunk("Counting"),
        ("sleep", 6),
        chunk(" still"),
        ("sleep", 20),
        chunk(" here."),
        ("raw", "data: [DONE]\n\n"),
    ]
    server = live_daphne(
        REDIS_URL=redis_url, ASSISTANT_BACKEND="openai", OPENAI_BASE_URL=fake_openai.base_url
    )
    chat = chat_create(user=alice, organization=organization)
    _, token = api_token_create(user=alice)
    with httpx.stream(
        "POST",
        f"{server.url}/chats/{chat.pk}/messages",
        json={"prompt": "Count slowly"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(10, read=40),
    ) as response:
        assert response.status_code == 200
        events = list(sse_events(response))
    text = "".join(event["text"] for event in events if event["type"] == "chunk")
    assert text == "Counting still here."
    assert events[-1]["type"] == "done" and events[-1]["status"] == "complete"
    assert "Traceback" not in server.log()


def test_a_viewer_gets_frames_again_after_15_seconds_of_source_silence(
    live_daphne, redis_url, alice, organization
):
    camera = camera_create(organization=organization, name="Gate", source="push:")
    _, token = api_token_create(user=alice)
    server = live_daphne(REDIS_URL=redis_url)
    url = f"ws://127.0.0.1:{server.port}{camera.stream_path}"
    with websockets.sync.client.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as viewer:
        first_batch = publish_until_seen(viewer, redis_url, camera.public_id)
        # The camera's source reconnecting: nothing published for 15 s.
        drain(viewer)
        time.sleep(15)
        second_batch = publish_frames(redis_url, camera.public_id, count=10)
        frame = json.loads(viewer.recv(timeout=3))
    assert frame["timestamp"] >= second_batch > first_batch
    assert "Traceback" not in server.log()
