"""Starting and stopping replies: the one service every way of asking for a reply goes through
(a new prompt, a regenerated reply, an edited prompt), whether it comes from the seed's path,
the API or the page. The views only adapt HTTP to it and its exceptions to answers.

`reply_start` validates, rate-limits, stores the prompt and an empty `streaming` reply and
starts its run; the caller streams from the run's follower it returns (see
`chats.streaming.follow`), which the run hands every piece of text from the first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from chats.assistants import AssistantContext, Turn
from chats.assistants.catalog import backend_for_model
from chats.models import Chat, Message
from chats.selectors import chat_get_for_user, message_get_for_user, reply_inputs
from chats.services import (
    chat_rate_limit_hit,
    message_send,
    message_stop,
    prompt_clean,
    prompt_edit,
    reply_regenerate,
)
from chats.streaming.run import RunFollower, run_start, run_stop_request

# How long a stop waits for the run to store the partial text and end.
STOP_WAIT_SECONDS = 5.0
STOP_POLL_SECONDS = 0.05


class ChatNotFound(Exception):
    """No such chat, or not this user's: the same answer either way."""


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(
            f"Too many prompts: the limit is {settings.CHAT_RATE_LIMIT_PER_MINUTE} a minute. "
            f"Try again in {retry_after} s."
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class ReplyAsk:
    """What is asked: a reply to a new `prompt`, another reply to the prompt that reply
    `message_id` answered (`regenerate`), or a reply to prompt `message_id` rewritten (`edit`)."""

    kind: Literal["prompt", "regenerate", "edit"]
    prompt: object = None
    message_id: int | None = None


@dataclass(frozen=True)
class StartedReply:
    reply: Message
    # Give it to `reply_events`.
    receiver: RunFollower


def _reply_store(
    user: AbstractBaseUser, chat_id: int, ask: ReplyAsk
) -> tuple[Message, list[Turn], AssistantContext]:
    chat = chat_get_for_user(user=user, chat_id=chat_id)
    if chat is None:
        raise ChatNotFound()
    if ask.kind != "regenerate":
        prompt_clean(ask.prompt)  # a bad prompt is refused before it counts against the limit
    retry_after = chat_rate_limit_hit(user=user)
    if retry_after:
        raise RateLimited(retry_after)
    try:
        if ask.kind == "prompt":
            _, reply = message_send(chat=chat, prompt=ask.prompt)
        elif ask.kind == "regenerate":
            reply = reply_regenerate(chat=chat, reply_id=ask.message_id)
        else:
            _, reply = prompt_edit(chat=chat, message_id=ask.message_id, prompt=ask.prompt)
    except Chat.DoesNotExist:
        raise ChatNotFound() from None  # deleted since it was read
    # Read in the same thread hop: the run then needs the database only to write.
    return reply, *reply_inputs(reply=reply)


async def reply_start(*, user: AbstractBaseUser, chat_id: int, ask: ReplyAsk) -> StartedReply:
    """Store what is asked and start generating the reply.

    Raises ChatNotFound, ChatInputError (a bad prompt, or no such message to regenerate or
    edit), RateLimited, or ChatBusy (a reply is still running in this chat)."""
    reply, turns, context = await sync_to_async(_reply_store)(user, chat_id, ask)
    backend = backend_for_model(reply.chat.model)
    run = await run_start(message_id=reply.pk, turns=turns, context=context, backend=backend)
    return StartedReply(reply=reply, receiver=run.follow())


async def reply_stop(*, user: AbstractBaseUser, chat_id: int, message_id: int) -> Message:
    """Stop generating a reply, wherever its run is; the reply as stored afterwards (status
    `stopped`, with the text so far). Raises ChatNotFound."""
    message = await sync_to_async(message_get_for_user)(
        user=user, chat_id=chat_id, message_id=message_id
    )
    if message is None:
        raise ChatNotFound()
    if message.status != Message.Status.STREAMING:
        return message
    delivered = await run_stop_request(message_id=message.pk)
    # The run stores the partial text as `stopped` before anything else; watch for that
    # (stopping is rare: polling is simpler than listening, and cannot miss the end).
    # Undelivered (the channel layer is away), the stored reply is stopped at once: a run in
    # another process sees that at its next write and stops too.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (STOP_WAIT_SECONDS if delivered else 0)
    while message.status == Message.Status.STREAMING:
        if loop.time() >= deadline:
            # No run answered: it was lost. Stop the stored reply ourselves.
            await sync_to_async(message_stop)(message=message)
            break
        await asyncio.sleep(STOP_POLL_SECONDS)
        await message.arefresh_from_db(fields=["status"])
    await message.arefresh_from_db()
    return message
