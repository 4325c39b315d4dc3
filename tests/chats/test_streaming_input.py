"""Bad input to the streaming endpoints: a clear JSON error before any stream starts."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chats.models import Message
from chats.services import chat_create, message_send
from tests.chats.asgi_http import request
from tests.conftest import start_with_room_in_the_window

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_builtin(settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    settings.ASSISTANT_BACKEND = "builtin"


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization)


async def post(chat_id, body, token, path="/chats/{}/messages", headers=None):
    response = await request("POST", path.format(chat_id), token=token, body=body, headers=headers)
    await response.read_all()
    assert response.headers["content-type"] == "application/json"
    return response


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed"),
        (b"\xff\xfe", 400, "malformed"),
        (b"", 400, "malformed"),
        (["prompt"], 400, "malformed"),
        ("just a string", 400, "malformed"),
        ({}, 400, "prompt_missing"),
        ({"question": "hi"}, 400, "prompt_missing"),
        ({"prompt": ""}, 400, "prompt_empty"),
        ({"prompt": "   "}, 400, "prompt_empty"),
        ({"prompt": 7}, 400, "prompt_invalid"),
        ({"prompt": {"text": "hi"}}, 400, "prompt_invalid"),
        ({"prompt": "x" * 8001}, 400, "prompt_too_long"),
    ],
)
async def test_bad_bodies_get_a_json_error_and_store_nothing(chat, alice_api, body, status, code):
    response = await post(chat.pk, body, alice_api.raw_token)
    assert response.status == status
    assert response.json()["code"] == code
    assert response.json()["error"]
    assert not await Message.objects.filter(chat=chat).aexists()


async def test_the_prompt_limit_is_named_in_the_error(chat, alice_api):
    response = await post(chat.pk, {"prompt": "x" * 8001}, alice_api.raw_token)
    assert response.json()["error"] == "The prompt is 8001 characters long; the limit is 8000."


async def test_no_authentication_is_401(chat):
    response = await post(chat.pk, {"prompt": "hi"}, None)
    assert response.status == 401
    assert response.json()["code"] == "not_authenticated"


async def test_a_revoked_token_is_401(chat):
    response = await post(chat.pk, {"prompt": "hi"}, "sl_not-a-real-token")
    assert response.status == 401
    assert response.json()["code"] == "invalid_token"


async def test_an_unknown_chat_is_404(chat, alice_api):
    response = await post(chat.pk + 1000, {"prompt": "hi"}, alice_api.raw_token)
    assert response.status == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}


@pytest.mark.parametrize("path", ["/chats/{}/messages", "/api/v1/chats/{}/messages"])
async def test_bob_and_charlie_get_404_for_alices_chat(chat, bob_api, charlie_api, path):
    for client in (bob_api, charlie_api):
        response = await post(chat.pk, {"prompt": "hi"}, client.raw_token, path=path)
        assert response.status == 404
        assert response.json() == {"error": "Not found.", "code": "not_found"}
    assert not await Message.objects.filter(chat=chat).aexists()


async def test_a_session_without_csrf_is_refused(chat, alice):
    from django.test import AsyncClient

    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    response = await client.post(
        f"/chats/{chat.pk}/messages", {"prompt": "hi"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"


async def test_the_rate_limit_answers_429_with_retry_after(chat, alice_api, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    start_with_room_in_the_window(5, window=60)  # both prompts in one minute
    first = await request(
        "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": "hi"}
    )
    await first.read_all()
    from tests.chats.asgi_http import runs_finished

    await runs_finished()
    second = await post(chat.pk, {"prompt": "again"}, alice_api.raw_token)
    assert second.status == 429
    assert second.json()["code"] == "rate_limited"
    assert 1 <= int(second.headers["retry-after"]) <= 60
    assert await Message.objects.filter(chat=chat).acount() == 2


async def test_other_methods_are_405_saying_which_are_allowed(chat, alice_api):
    response = await request("PUT", f"/chats/{chat.pk}/messages", token=alice_api.raw_token)
    await response.read_all()
    assert response.status == 405
    assert response.headers["allow"] == "GET, POST"


@pytest.mark.parametrize("offset", ["-1", "abc", "1.5", "9" * 20])
async def test_resume_refuses_a_bad_offset(chat, alice_api, offset):
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    response = await request(
        "GET",
        f"/chats/{chat.pk}/messages/{reply.pk}/stream?offset={offset}",
        token=alice_api.raw_token,
    )
    await response.read_all()
    assert response.status == 400
    assert response.json()["code"] == "invalid_offset"


@pytest.mark.parametrize("action", ["stream", "stop"])
async def test_resume_and_stop_are_404_for_bob_charlie_and_other_chats(
    chat, alice, organization, alice_api, bob_api, charlie_api, action
):
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    other = await database_sync_to_async(chat_create)(user=alice, organization=organization)
    method = "GET" if action == "stream" else "POST"
    attempts = [
        (bob_api.raw_token, chat.pk),
        (charlie_api.raw_token, chat.pk),
        (alice_api.raw_token, other.pk),
    ]
    for token, chat_id in attempts:
        response = await request(
            method, f"/chats/{chat_id}/messages/{reply.pk}/{action}", token=token
        )
        await response.read_all()
        assert response.status == 404
        assert response.json() == {"error": "Not found.", "code": "not_found"}
    await reply.arefresh_from_db()
    assert reply.status == "streaming"


async def test_resume_and_stop_need_authentication(chat):
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    for method, action in (("GET", "stream"), ("POST", "stop")):
        response = await request(method, f"/chats/{chat.pk}/messages/{reply.pk}/{action}")
        await response.read_all()
        assert response.status == 401
