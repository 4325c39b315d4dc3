"""The SSE endpoints through the real ASGI application: framing, lifecycle, resume, stop."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

import chats.replies
from chats.models import Message
from chats.services import (
    STALE_ERROR,
    chat_create,
    message_finish,
    message_flush,
    message_send,
)
from chats.streaming import protocol
from tests.chats.asgi_http import request, runs_finished

pytestmark = pytest.mark.django_db(transaction=True)

TEAM_ANSWER_BYTES = (
    b'data: {"type": "chunk", "text": "Alice"}\n\n'
    b'data: {"type": "chunk", "text": " Co"}\n\n'
    b'data: {"type": "chunk", "text": " has"}\n\n'
    b'data: {"type": "chunk", "text": " 2"}\n\n'
    b'data: {"type": "chunk", "text": " members:"}\n\n'
    b'data: {"type": "chunk", "text": "\\n\\n-"}\n\n'
    b'data: {"type": "chunk", "text": " **bob**"}\n\n'
    b'data: {"type": "chunk", "text": " (member)"}\n\n'
    b'data: {"type": "chunk", "text": "\\n-"}\n\n'
    b'data: {"type": "chunk", "text": " **alice**"}\n\n'
    b'data: {"type": "chunk", "text": " (owner)"}\n\n'
)
TEAM_ANSWER = "Alice Co has 2 members:\n\n- **bob** (member)\n- **alice** (owner)"
TEAM_HTML = (
    "<p>Alice Co has 2 members:</p>\\n<ul>\\n<li><strong>bob</strong> (member)</li>\\n"
    "<li><strong>alice</strong> (owner)</li>\\n</ul>"
)


@pytest.fixture(autouse=True)
def _fast_builtin(settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    settings.ASSISTANT_BACKEND = "builtin"


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization)


@pytest.fixture
def token(alice_api):
    return alice_api.raw_token


async def reply_of(chat) -> Message:
    return await Message.objects.filter(chat=chat, role="assistant").alatest("id")


async def test_a_prompt_streams_the_reply_byte_for_byte_as_the_seed(chat, token, settings):
    # A pause between pieces longer than one publish, so no two pieces share an event
    # (deltas that arrive while a publish is in flight go out together).
    settings.ASSISTANT_BUILTIN_DELAY_MS = 100
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    body = await stream.read_all()
    reply = await reply_of(chat)
    assert (
        body
        == TEAM_ANSWER_BYTES
        + (
            f'data: {{"type": "done", "message_id": {reply.pk}, "status": "complete", '
            f'"html": "{TEAM_HTML}"}}\n\n'
        ).encode()
    )
    assert (reply.content, reply.status) == (TEAM_ANSWER, "complete")
    await runs_finished()


async def test_the_stream_has_the_event_stream_headers(chat, token):
    stream = await request(
        "POST", f"/api/v1/chats/{chat.pk}/messages", token=token, body={"prompt": "hi"}
    )
    await stream.read_all()
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in stream.headers
    assert stream.headers["x-message-id"] == str((await reply_of(chat)).pk)
    await runs_finished()


async def test_the_prompt_is_stored_before_the_first_event(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 50
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "hi there"}
    )
    rows = [
        m async for m in Message.objects.filter(chat=chat).values_list("role", "content", "status")
    ]
    assert rows[0] == ("user", "hi there", "complete")
    assert rows[1][0] == "assistant" and rows[1][2] == "streaming"
    await stream.read_all()
    await runs_finished()


async def test_events_are_sent_as_they_are_made_not_at_the_end(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 100
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    first = await stream.next_part(limit=2)
    assert first == b'data: {"type": "chunk", "text": "Alice"}\n\n'
    reply = await reply_of(chat)
    assert reply.status == "streaming"
    await stream.read_all()
    await runs_finished()


async def test_the_reply_is_completed_and_stored_after_the_client_disconnects(
    chat, token, settings
):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 20
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.next_part()
    await stream.disconnect()
    reply = await reply_of(chat)
    assert reply.status == "streaming"
    await runs_finished()
    await reply.arefresh_from_db()
    assert (reply.content, reply.status) == (TEAM_ANSWER, "complete")


async def test_a_run_survives_the_request_task_being_cancelled(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 20
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.next_part()
    stream.communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream.communicator.future
    await runs_finished()
    reply = await reply_of(chat)
    assert (reply.content, reply.status) == (TEAM_ANSWER, "complete")


async def test_the_run_flushes_text_while_generating(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 200
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.read_until(b'"text": " 2"')
    await asyncio.sleep(protocol.FLUSH_INTERVAL * 2)
    reply = await reply_of(chat)
    assert reply.status == "streaming"
    assert TEAM_ANSWER.startswith(reply.content) and len(reply.content) >= len(
        "Alice Co has 2 members:"
    )
    await stream.read_all()
    await runs_finished()


async def test_stop_keeps_the_partial_text_as_stopped(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 100
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.read_until(b" has")
    message_id = stream.headers["x-message-id"]
    stop = await request("POST", f"/api/v1/chats/{chat.pk}/messages/{message_id}/stop", token=token)
    await stop.read_all()
    assert stop.status == 200
    assert stop.json()["status"] == "stopped"
    await stream.read_all()
    events = stream.events()
    assert events[-1]["type"] == "done" and events[-1]["status"] == "stopped"
    reply = await reply_of(chat)
    assert reply.status == "stopped"
    assert reply.content == stream.text()
    assert TEAM_ANSWER.startswith(reply.content) and 0 < len(reply.content) < len(TEAM_ANSWER)
    await runs_finished()


async def test_stopping_a_finished_reply_changes_nothing(chat, token):
    stream = await request("POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "hi"})
    await stream.read_all()
    await runs_finished()
    reply = await reply_of(chat)
    stop = await request("POST", f"/chats/{chat.pk}/messages/{reply.pk}/stop", token=token)
    await stop.read_all()
    assert stop.json()["status"] == "complete"


async def test_stop_of_a_reply_whose_run_was_lost_marks_it_stopped(
    chat, token, settings, monkeypatch
):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    await database_sync_to_async(message_flush)(message_id=reply.pk, content="Half")
    monkeypatch.setattr(chats.replies, "STOP_WAIT_SECONDS", 0.3)
    stop = await request("POST", f"/chats/{chat.pk}/messages/{reply.pk}/stop", token=token)
    await stop.read_all()
    assert (stop.json()["status"], stop.json()["content"]) == ("stopped", "Half")


async def test_resume_from_an_offset_sends_the_rest_of_a_finished_reply(chat, token):
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.read_all()
    await runs_finished()
    reply = await reply_of(chat)
    resumed = await request(
        "GET", f"/api/v1/chats/{chat.pk}/messages/{reply.pk}/stream?offset=8", token=token
    )
    body = await resumed.read_all()
    assert body.startswith(b'data: {"type": "chunk", "text": " has 2 members:')
    assert resumed.events()[-1]["type"] == "done"
    assert resumed.text() == TEAM_ANSWER[8:]


async def test_resume_with_last_event_id_header(chat, token):
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.read_all()
    await runs_finished()
    reply = await reply_of(chat)
    resumed = await request(
        "GET",
        f"/chats/{chat.pk}/messages/{reply.pk}/stream",
        token=token,
        headers={"Last-Event-ID": "5"},
    )
    await resumed.read_all()
    assert resumed.text() == TEAM_ANSWER[5:]


async def test_resume_mid_reply_sends_the_text_so_far_then_continues_live(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 80
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.read_until(b" members:")
    await stream.disconnect()
    await asyncio.sleep(protocol.FLUSH_INTERVAL * 2)
    reply = await reply_of(chat)
    resumed = await request(
        "GET", f"/chats/{chat.pk}/messages/{reply.pk}/stream?offset=0", token=token
    )
    first = await resumed.next_part()
    assert first.startswith(b'data: {"type": "chunk", "text": "Alice Co has 2 members:')
    await resumed.read_all()
    assert resumed.text() == TEAM_ANSWER
    assert resumed.events()[-1]["status"] == "complete"
    await runs_finished()


async def test_resume_fills_a_gap_from_the_database(chat, token, settings):
    """A listener that missed deltas (full channel) gets the missing text from the database."""
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    await database_sync_to_async(message_flush)(message_id=reply.pk, content="Hello wor")
    resumed = await request(
        "GET", f"/chats/{chat.pk}/messages/{reply.pk}/stream?offset=3", token=token
    )
    assert await resumed.next_part() == b'data: {"type": "chunk", "text": "lo wor"}\n\n'
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    # "Hello world" in the DB but the listener only hears the delta at 11: it must fetch "ld".
    await database_sync_to_async(message_flush)(message_id=reply.pk, content="Hello world")
    await layer.group_send(
        protocol.message_group(reply.pk), {"type": "chat.delta", "at": 11, "text": "!"}
    )
    await database_sync_to_async(Message.objects.filter(pk=reply.pk).update)(
        content="Hello world!", status="complete"
    )
    await layer.group_send(
        protocol.message_group(reply.pk), {"type": "chat.end", "status": "complete", "error": ""}
    )
    await resumed.read_all()
    assert resumed.text() == "lo world!"


async def test_a_backend_error_mid_stream_sends_error_then_done_and_keeps_the_text(
    chat, token, settings, fake_openai
):
    from tests.chats.fake_openai import chunk

    settings.ASSISTANT_BACKEND = "openai"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    fake_openai.script = [
        chunk("Half an"),
        ("sleep", 0.2),
        chunk(" answer"),
        ("data", {"error": {"message": "model crashed"}}),
    ]
    stream = await request("POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "hi"})
    body = await stream.read_all()
    reply = await reply_of(chat)
    error = "The assistant server reported an error mid-reply: model crashed"
    assert body == (
        b'data: {"type": "chunk", "text": "Half an"}\n\n'
        b'data: {"type": "chunk", "text": " answer"}\n\n'
        + f'data: {{"type": "error", "message": "{error}"}}\n\n'.encode()
        + f'data: {{"type": "done", "message_id": {reply.pk}, "status": "failed", '
        f'"html": "<p>Half an answer</p>"}}\n\n'.encode()
    )
    assert (reply.content, reply.status, reply.error) == ("Half an answer", "failed", error)
    await runs_finished()


async def test_stop_closes_the_upstream_request(chat, token, settings, fake_openai):
    from tests.chats.fake_openai import chunk

    settings.ASSISTANT_BACKEND = "openai"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    fake_openai.script = [chunk("Thinking"), ("until_disconnect", 10)]
    stream = await request("POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "hi"})
    await stream.read_until(b"Thinking")
    stop = await request(
        "POST", f"/chats/{chat.pk}/messages/{stream.headers['x-message-id']}/stop", token=token
    )
    await stop.read_all()
    assert stop.json()["content"] == "Thinking"
    assert await asyncio.to_thread(fake_openai.disconnected.wait, 5)
    await stream.read_all()
    await runs_finished()


async def test_keep_alive_comments_flow_while_the_backend_is_silent(
    chat, token, settings, fake_openai
):
    from tests.chats.fake_openai import reply as fake_reply

    settings.ASSISTANT_BACKEND = "openai"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.SSE_KEEPALIVE_SECONDS = 0.1
    fake_openai.script = fake_reply("Slow", " answer", delay=0.45)
    stream = await request("POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "hi"})
    body = await stream.read_all()
    assert body.count(b": keep-alive\n\n") >= 4
    assert body.startswith(b": keep-alive\n\n")
    assert stream.text() == "Slow answer"
    await runs_finished()


async def test_a_stale_reply_ends_as_failed_for_a_listener(chat, token):
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    await database_sync_to_async(Message.objects.filter(pk=reply.pk).update)(
        content="Lost", updated_at=timezone.now() - timedelta(minutes=1)
    )
    resumed = await request("GET", f"/chats/{chat.pk}/messages/{reply.pk}/stream", token=token)
    await resumed.read_all()
    assert [e["type"] for e in resumed.events()] == ["chunk", "error", "done"]
    assert resumed.events()[1]["message"] == STALE_ERROR
    assert resumed.events()[2]["status"] == "failed"


async def test_a_listener_notices_a_run_that_dies_silently(chat, token, settings):
    settings.SSE_KEEPALIVE_SECONDS = 0.1
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    resumed = await request("GET", f"/chats/{chat.pk}/messages/{reply.pk}/stream", token=token)
    await resumed.read_until(b": keep-alive")
    await database_sync_to_async(Message.objects.filter(pk=reply.pk).update)(
        updated_at=timezone.now() - timedelta(minutes=1)
    )
    await resumed.read_all()
    assert resumed.events()[-1]["status"] == "failed"


async def test_deleting_the_chat_mid_reply_ends_the_stream_and_the_run(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 100
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.read_until(b"Alice")
    await chat.adelete()
    await stream.read_all()
    assert stream.events()[-2] == {
        "type": "error",
        "message": "This reply no longer exists: its chat was deleted.",
    }
    await runs_finished()


async def test_a_second_prompt_while_streaming_is_refused_with_409(chat, token, settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 50
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    second = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "again"}
    )
    await second.read_all()
    assert second.status == 409
    assert second.json()["code"] == "reply_in_progress"
    assert second.json()["message_id"] == int(stream.headers["x-message-id"])
    await stream.read_all()
    await runs_finished()


def _events_json(body: bytes) -> list[dict]:
    return [
        json.loads(line[6:]) for line in body.decode().split("\n\n") if line.startswith("data: ")
    ]


async def test_a_listener_ends_from_the_database_when_the_end_event_is_lost(chat, token):
    """channels-redis drops messages to a full channel; the stored reply is the truth."""
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    resumed = await request("GET", f"/chats/{chat.pk}/messages/{reply.pk}/stream", token=token)
    await database_sync_to_async(Message.objects.filter(pk=reply.pk).update)(
        content="Finished quietly", status="complete"
    )
    started = asyncio.get_running_loop().time()
    await resumed.read_all()
    assert asyncio.get_running_loop().time() - started < 3
    assert resumed.text() == "Finished quietly"
    assert resumed.events()[-1]["status"] == "complete"


async def test_an_end_whose_reply_is_still_stored_streaming_does_not_end_the_stream(chat, token):
    """A run whose final write failed still publishes its end: `done` never says `streaming`,
    the stream goes on until the stored reply ends (here a write; else the stale expiry)."""
    from channels.layers import get_channel_layer

    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    await database_sync_to_async(message_flush)(message_id=reply.pk, content="Alice and")
    resumed = await request("GET", f"/chats/{chat.pk}/messages/{reply.pk}/stream", token=token)
    assert await resumed.next_part() == b'data: {"type": "chunk", "text": "Alice and"}\n\n'
    await get_channel_layer().group_send(
        protocol.message_group(reply.pk), {"type": "chat.end", "status": "complete", "error": ""}
    )
    with pytest.raises(TimeoutError):
        await resumed.read_until(b'"type": "done"', limit=1.5)
    await database_sync_to_async(message_finish)(
        message_id=reply.pk, content="Alice and Bob", status="complete"
    )
    await resumed.read_all()
    assert resumed.text() == "Alice and Bob"
    assert resumed.events()[-1]["status"] == "complete"


async def test_a_stop_sent_to_the_control_group_stops_a_run_from_another_process(
    chat, token, settings
):
    from channels.layers import get_channel_layer

    settings.ASSISTANT_BUILTIN_DELAY_MS = 100
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=token, body={"prompt": "Who is on the team?"}
    )
    await stream.read_until(b" Co")
    message_id = int(stream.headers["x-message-id"])
    # What run_stop_request does when the run lives in another process.
    await get_channel_layer().group_send(protocol.control_group(message_id), {"type": "chat.stop"})
    await stream.read_all()
    assert stream.events()[-1]["status"] == "stopped"
    await runs_finished()
    reply = await reply_of(chat)
    assert reply.status == "stopped" and reply.content == stream.text()
