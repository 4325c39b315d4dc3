"""A Redis restart is survived without restarting daphne, and while Redis is down the requests
that need it answer JSON 503 with Retry-After (never an HTML 500).

Each test kills and restarts a redis-server of its own, never the machine's.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
import redis.exceptions
import websockets.sync.client
from asgiref.sync import sync_to_async
from channels_redis.core import RedisChannelLayer
from django.test import Client
from rest_framework.test import APIClient

from cameras.services import camera_create
from chats.models import Message
from chats.services import chat_create, message_send
from organizations.services import api_token_create
from project.channel_layer import GroupReceiver
from tests.cameras.conftest import jpeg_b64, now_ms
from tests.chats.asgi_http import request
from tests.chats.fake_openai import reply
from tests.resilience.conftest import publish_until_seen, sse_events

pytestmark = pytest.mark.redis

PIECES = [f"Piece {number}. " for number in range(1, 13)]


def test_a_reply_streamed_across_a_redis_restart_ends_with_the_full_text(
    own_redis, live_daphne, fake_openai, alice, organization
):
    fake_openai.script = reply(*PIECES, delay=0.5)
    server = live_daphne(
        REDIS_URL=own_redis.url, ASSISTANT_BACKEND="openai", OPENAI_BASE_URL=fake_openai.base_url
    )
    chat = chat_create(user=alice, organization=organization)
    _, token = api_token_create(user=alice)
    events = []
    with httpx.stream(
        "POST",
        f"{server.url}/chats/{chat.pk}/messages",
        json={"prompt": "Count"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(10, read=20),
    ) as response:
        assert response.status_code == 200
        for event in sse_events(response):
            events.append(event)
            if len(events) == 1:
                own_redis.stop()
                time.sleep(1.5)
                own_redis.start()
    text = "".join(event["text"] for event in events if event["type"] == "chunk")
    assert text == "".join(PIECES)
    assert events[-1]["type"] == "done" and events[-1]["status"] == "complete"
    # It went on through the layer after the restart, not only from the database.
    _assert_outage_logged_once(server)


def test_a_viewer_gets_frames_again_after_a_redis_restart_without_reconnecting(
    own_redis, live_daphne, alice, organization
):
    camera = camera_create(organization=organization, name="Yard", source="push:")
    _, token = api_token_create(user=alice)
    server = live_daphne(REDIS_URL=own_redis.url)
    url = f"ws://127.0.0.1:{server.port}{camera.stream_path}"
    with websockets.sync.client.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as viewer:
        before = publish_until_seen(viewer, own_redis.url, camera.public_id)
        own_redis.stop()
        time.sleep(2)
        own_redis.start()  # empty: the hub's group membership is gone
        restarted = time.monotonic()
        after = publish_until_seen(viewer, own_redis.url, camera.public_id)
        waited = time.monotonic() - restarted
    assert after > before
    # The receiver's backoff is at most 5 s; then it joins its group again.
    assert waited < 10, f"frames came back {waited:.1f} s after Redis did"
    _assert_outage_logged_once(server)


async def test_every_receiver_of_a_process_hears_its_group_again_after_a_restart(own_redis):
    layer = RedisChannelLayer(hosts=own_redis.layer_hosts())
    receivers = [GroupReceiver(layer, where="test", groups=[f"room_{n}"]) for n in range(3)]
    for receiver in receivers:
        await receiver.join()
    waiting = [asyncio.ensure_future(receiver.receive()) for receiver in receivers]
    await asyncio.sleep(0.5)
    own_redis.stop()
    await asyncio.sleep(1)
    own_redis.start()
    try:
        async with asyncio.timeout(15):
            while not all(task.done() for task in waiting):
                for number in range(3):
                    try:
                        await layer.group_send(f"room_{number}", {"type": "hello", "room": number})
                    except redis.exceptions.ConnectionError:
                        pass
                await asyncio.sleep(0.5)
        assert [task.result()["room"] for task in waiting] == [0, 1, 2]
    finally:
        for receiver in receivers:
            await receiver.close()
        await layer.close_pools()


@pytest.fixture
def redis_cache(own_redis, settings):
    """The Django cache on the test's own Redis (killed by the test)."""
    settings.CACHES = own_redis.caches()
    return own_redis


def _assert_json_503(response) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "unavailable"
    assert response.json()["error"]
    assert int(response["Retry-After"]) > 0


def test_while_redis_is_down_prompts_tokens_and_ingest_answer_json_503(
    redis_cache, alice, organization, alice_api, caplog
):
    chat = chat_create(user=alice, organization=organization)
    camera = camera_create(organization=organization, name="Webcam", source="push:")
    redis_cache.stop()

    prompt = alice_api.post(f"/chats/{chat.pk}/messages", {"prompt": "hi"}, format="json")
    _assert_json_503(prompt)
    assert not Message.objects.filter(chat=chat).exists()  # nothing stored half-way

    token = APIClient().post(
        "/api/v1/auth/token", {"username": "alice", "password": "alice-password"}, format="json"
    )
    _assert_json_503(token)

    ingest = alice_api.post(
        "/api/v1/actions/actions/send",
        {
            "streamName": "webcam",
            "streamType": "frame",
            "frame": jpeg_b64(),
            "timestamp": now_ms(),
            "camera_id": camera.public_id,
        },
        format="json",
    )
    _assert_json_503(ingest)

    # People get a short plain page, not Django's HTML 500.
    browser = Client()
    browser.force_login(alice)
    page = browser.get(f"/cameras/{camera.public_id}/snapshot.jpg")
    assert page.status_code == 503
    assert page["Content-Type"].startswith("text/plain")
    assert "Retry-After" in page

    # One warning for the outage, not Django's ERROR line for every 503 answered.
    assert not [r for r in caplog.records if r.name == "django.request"]
    outage = [r for r in caplog.records if r.name == "project.unavailable"]
    assert [r.levelname for r in outage] == ["WARNING"]

    redis_cache.start()
    again = APIClient().post(
        "/api/v1/auth/token", {"username": "alice", "password": "alice-password"}, format="json"
    )
    assert again.status_code == 201


@pytest.mark.django_db(transaction=True)
async def test_a_stop_while_redis_is_down_stops_the_stored_reply_at_once(
    own_redis, settings, alice, organization, alice_api
):
    settings.CHANNEL_LAYERS = own_redis.channel_layers()
    chat = await sync_to_async(chat_create)(user=alice, organization=organization)
    # A reply generated by a run in another process (none runs in this one).
    _, reply = await sync_to_async(message_send)(chat=chat, prompt="hi")
    own_redis.stop()
    started = time.monotonic()
    stopped = await request(
        "POST", f"/chats/{chat.pk}/messages/{reply.pk}/stop", token=alice_api.raw_token
    )
    await stopped.read_all()
    assert stopped.status == 200
    assert stopped.json()["status"] == "stopped"
    # Not the 5 s a stop waits for a run that was told: this one could not be told.
    assert time.monotonic() - started < 3


def _assert_outage_logged_once(server, limit: float = 5) -> None:
    """Each failing part logs one warning (with its traceback) when the outage begins, and the
    channel layer one line when it ends: no ERROR, nothing repeated."""
    deadline = time.monotonic() + limit
    while "reachable again" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log()
    records = re.findall(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$", log, re.MULTILINE)
    assert not [record for record in records if record[0] != "WARNING"], log[-3000:]
    warnings = [message for _, _, message in records]
    assert len(warnings) == len(set(warnings)), log[-3000:]
    assert sum("The channel layer is unreachable" in message for message in warnings) == 1
    assert log.count("The channel layer is reachable again") == 1, log[-3000:]
