"""Generation runs on their own: what they publish, and how they merge under a slow layer."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers
from django.db import connection
from django.utils import timezone

from chats.assistants.builtin import builtin_answer
from chats.assistants.catalog import backend_for_model
from chats.assistants.openai_compatible import OpenAICompatibleBackend
from chats.models import Message
from chats.selectors import reply_inputs
from chats.services import STALE_AFTER_SECONDS, STALE_ERROR, chat_create, message_send
from chats.streaming import protocol
from chats.streaming import run as runs
from project.channel_layer import GroupReceiver
from project.metrics import REPLY_FLUSH_FAILURES
from tests.chats.asgi_http import request, runs_finished
from tests.chats.fake_openai import reply as scripted_reply

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "Who is on the team, and how many chats do I have?"


class SlowLayer(InMemoryChannelLayer):
    """An in-memory layer whose group sends take as long as a busy Redis round trip."""

    async def group_send(self, group, message):
        if message["type"] == "chat.delta":
            await asyncio.sleep(0.03)
        await super().group_send(group, message)


def offsets_of(texts: list[str]) -> list[int]:
    offsets, at = [], 0
    for text in texts:
        offsets.append(at)
        at += len(text)
    return offsets


async def start_reply(alice, organization):
    chat = await database_sync_to_async(chat_create)(user=alice, organization=organization)
    _, reply = await database_sync_to_async(message_send)(chat=chat, prompt=PROMPT)
    turns, context = await database_sync_to_async(reply_inputs)(reply=reply)
    return reply, turns, context


async def published(layer, reply, turns, context) -> list[dict]:
    """What a listener in another process receives once it asked to follow from the start."""
    channel = await layer.new_channel()
    await layer.group_add(protocol.message_group(reply.pk), channel)
    backend = backend_for_model("")  # the builtin, with the test's delay
    await runs.run_start(message_id=reply.pk, turns=turns, context=context, backend=backend)
    await layer.group_send(protocol.control_group(reply.pk), {"type": "chat.follow", "at": 0})
    events = []
    while not events or events[-1]["type"] != "chat.end":
        events.append(await layer.receive(channel))
    await runs_finished()
    return events


async def test_each_delta_is_published_with_its_offset_then_the_end(alice, organization, settings):
    # Pauses longer than a publish, so each piece is published alone.
    settings.ASSISTANT_BUILTIN_DELAY_MS = 50
    reply, turns, context = await start_reply(alice, organization)
    events = await published(channel_layers["default"], reply, turns, context)
    deltas, end = events[:-1], events[-1]
    answer = await builtin_answer(PROMPT, context)
    pieces = re.findall(r"\s*\S+", answer)
    assert [d["text"] for d in deltas] == pieces
    assert [d["at"] for d in deltas] == offsets_of(pieces)
    assert end == {"type": "chat.end", "status": "complete", "error": ""}
    stored = await Message.objects.aget(pk=reply.pk)
    assert (stored.content, stored.status) == (answer, "complete")


async def test_deltas_that_arrive_during_a_slow_publish_go_out_together(
    alice, organization, settings, monkeypatch
):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    layer = SlowLayer()
    monkeypatch.setitem(channel_layers.backends, "default", layer)
    reply, turns, context = await start_reply(alice, organization)
    events = await published(layer, reply, turns, context)
    deltas = events[:-1]
    answer = await builtin_answer(PROMPT, context)
    # Fewer, larger messages; contiguous offsets; nothing lost or repeated.
    assert len(deltas) < len(re.findall(r"\s*\S+", answer))
    assert "".join(d["text"] for d in deltas) == answer
    assert [d["at"] for d in deltas] == offsets_of([d["text"] for d in deltas])


@sync_to_async
def rename_messages_table(old: str, new: str) -> None:
    # A real database failure: every write of a reply finds no table while it is renamed.
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")
    connection.close()


def receives_pending() -> list[asyncio.Task]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__ == GroupReceiver._next_message.__qualname__
    ]


async def test_a_run_whose_final_write_fails_closes_its_stop_channel_and_logs_once(
    alice, organization, alice_api, fake_openai, caplog
):
    # The pause lets the table go away after the first piece is stored and before the end.
    fake_openai.script = scripted_reply("Alice", " and Bob", delay=1.5)
    backend = OpenAICompatibleBackend(
        base_url=fake_openai.base_url, api_key="", model="test", connect_timeout=5, idle_timeout=10
    )
    reply, turns, context = await start_reply(alice, organization)
    assert receives_pending() == []
    with caplog.at_level(logging.INFO, logger="chats.streaming.run"):
        await runs.run_start(message_id=reply.pk, turns=turns, context=context, backend=backend)
        for _ in range(100):  # the first piece flushed, within about 5 s
            if (await Message.objects.aget(pk=reply.pk)).content == "Alice":
                break
            await asyncio.sleep(0.05)
        await rename_messages_table("chats_message", "chats_message_away")
        try:
            await runs_finished()
        finally:
            await rename_messages_table("chats_message_away", "chats_message")

    # The stop channel's receive is not left running forever, and the failure is told once.
    assert receives_pending() == []
    failures = [r for r in caplog.records if r.getMessage().startswith("The run of reply")]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    # No run writes the reply any more: it stays `streaming` with the text flushed so far
    # until it has been silent for the stale allowance, then a listener ends it as failed.
    stored = await Message.objects.aget(pk=reply.pk)
    assert (stored.status, stored.content) == ("streaming", "Alice")
    await Message.objects.filter(pk=reply.pk).aupdate(
        updated_at=timezone.now() - timedelta(seconds=STALE_AFTER_SECONDS + 1)
    )
    resumed = await request(
        "GET",
        f"/chats/{reply.chat_id}/messages/{reply.pk}/stream",
        token=alice_api.raw_token,
    )
    await resumed.read_all()
    assert [e["type"] for e in resumed.events()] == ["chunk", "error", "done"]
    assert resumed.events()[1]["message"] == STALE_ERROR
    assert resumed.events()[2]["status"] == "failed"


async def test_a_failed_flush_is_logged_once_and_retried_so_the_heartbeat_goes_on(
    alice, organization, fake_openai, caplog
):
    # Pauses longer than a retry: the text written after the outage is seen mid-run.
    fake_openai.script = scripted_reply("Alice", " and", " Bob", delay=2)
    backend = OpenAICompatibleBackend(
        base_url=fake_openai.base_url, api_key="", model="test", connect_timeout=5, idle_timeout=10
    )
    reply, turns, context = await start_reply(alice, organization)
    failures_before = REPLY_FLUSH_FAILURES._value.get()
    with caplog.at_level(logging.INFO, logger="chats.streaming.run"):
        run = await runs.run_start(
            message_id=reply.pk, turns=turns, context=context, backend=backend
        )
        for _ in range(100):  # the first piece flushed, within about 5 s
            if (await Message.objects.aget(pk=reply.pk)).content == "Alice":
                break
            await asyncio.sleep(0.05)
        await rename_messages_table("chats_message", "chats_message_away")
        try:
            for _ in range(100):  # " and" arrives and its flush fails, within about 5 s
                if REPLY_FLUSH_FAILURES._value.get() > failures_before:
                    break
                await asyncio.sleep(0.05)
        finally:
            await rename_messages_table("chats_message_away", "chats_message")
        # Flushing goes on: the text written before the run ends.
        for _ in range(100):
            if (await Message.objects.aget(pk=reply.pk)).content == "Alice and":
                break
            await asyncio.sleep(0.05)
        assert not run.task.done()
        await runs_finished()

    stored = await Message.objects.aget(pk=reply.pk)
    assert (stored.status, stored.content) == ("complete", "Alice and Bob")
    assert REPLY_FLUSH_FAILURES._value.get() > failures_before
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].exc_info is not None
    assert any(m.startswith(f"Writing reply {reply.pk} works again") for m in caplog.messages)
