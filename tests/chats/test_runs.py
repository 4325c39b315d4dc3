"""Generation runs on their own: what they publish, and how they merge under a slow layer."""

from __future__ import annotations

import asyncio
import re

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers

from chats import runs
from chats.assistants.builtin import builtin_answer
from chats.models import Message
from chats.selectors import reply_inputs
from chats.services import chat_create, message_send
from tests.chats.asgi_http import runs_finished

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
    channel = await layer.new_channel()
    await layer.group_add(runs.message_group(reply.pk), channel)
    runs.run_start(message_id=reply.pk, turns=turns, context=context)
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
    answer = builtin_answer(PROMPT, context)
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
    answer = builtin_answer(PROMPT, context)
    # Fewer, larger messages; contiguous offsets; nothing lost or repeated.
    assert len(deltas) < len(re.findall(r"\s*\S+", answer))
    assert "".join(d["text"] for d in deltas) == answer
    assert [d["at"] for d in deltas] == offsets_of([d["text"] for d in deltas])
