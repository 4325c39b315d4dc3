"""Writes about chats and messages: create, rename, delete, send a prompt, and the life of a
reply (flush, finish, stop, stale expiry). Generation itself lives in `chats.streaming.run`."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from chats.branches import chat_tree
from chats.models import Chat, Message
from organizations.models import Organization
from project.counters import cache_counter_incr
from project.metrics import REPLIES_EXPIRED
from project.text_input import UnstorableText, text_storable_check

TITLE_MAX_CHARS = 60
TITLE_FIELD_MAX_CHARS = 120
# A running reply writes at least every few seconds (its heartbeat); one silent this long has
# lost its run (server restart, crash) and is marked failed so nothing stays `streaming`.
STALE_AFTER_SECONDS = 30
STALE_ERROR = (
    "The reply stopped being generated (the server restarted or the run was lost); "
    "the text so far is kept. Send the prompt again to retry."
)


class ChatInputError(ValueError):
    """Input a person can fix; `code` is the stable machine code of the JSON error."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.message, self.code = message, code


class ChatBusy(Exception):
    """A reply is already being generated in this chat."""

    def __init__(self, message: Message):
        super().__init__("A reply is already being generated in this chat.")
        self.streaming_message = message


def chat_title_from_prompt(prompt: str) -> str:
    """The first words of the prompt, cut on a word boundary at about 60 characters."""
    text = " ".join(prompt.split())
    if len(text) <= TITLE_MAX_CHARS:
        return text
    head = text[: TITLE_MAX_CHARS + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else ""
    # No space early enough (one very long word): cut inside it rather than keep one word.
    if len(cut) < TITLE_MAX_CHARS // 2:
        cut = text[:TITLE_MAX_CHARS]
    return cut.rstrip() + "…"


def _storable(text: str, *, field: str) -> None:
    try:
        text_storable_check(text, field=field)
    except UnstorableText as refused:
        raise ChatInputError(refused.message, "invalid_characters") from None


def _clean_title(title: object) -> str:
    if not isinstance(title, str):
        raise ChatInputError("The title must be a string.")
    _storable(title, field="The title")
    cleaned = " ".join(title.split())
    if not cleaned:
        raise ChatInputError("The title must not be empty.")
    if len(cleaned) > TITLE_FIELD_MAX_CHARS:
        raise ChatInputError(f"The title is longer than {TITLE_FIELD_MAX_CHARS} characters.")
    return cleaned


def prompt_clean(prompt: object) -> str:
    """The prompt to store, or ChatInputError saying what is wrong with it."""
    if prompt is None:
        raise ChatInputError('The body needs a "prompt": {"prompt": "..."}.', "prompt_missing")
    if not isinstance(prompt, str):
        raise ChatInputError("The prompt must be a string.", "prompt_invalid")
    _storable(prompt, field="The prompt")
    cleaned = prompt.strip()
    if not cleaned:
        raise ChatInputError("The prompt is empty.", "prompt_empty")
    limit = settings.CHAT_PROMPT_MAX_CHARS
    if len(cleaned) > limit:
        raise ChatInputError(
            f"The prompt is {len(cleaned)} characters long; the limit is {limit}.",
            "prompt_too_long",
        )
    return cleaned


def chat_create(*, user: AbstractBaseUser, organization: Organization, title: str = "") -> Chat:
    """Call with an organization the user is a member of (chosen through its selectors)."""
    return Chat.objects.create(
        user=user, organization=organization, title=_clean_title(title) if title else ""
    )


def chat_rename(*, chat: Chat, title: object) -> Chat:
    chat.title = _clean_title(title)
    chat.save(update_fields=["title", "updated_at"])
    return chat


def chat_delete(*, chat: Chat) -> None:
    # A run still generating for this chat notices at its next flush (no row) and stops.
    chat.delete()


def chat_rate_limit_hit(*, user: AbstractBaseUser) -> int:
    """Count one prompt; return 0 when allowed, else the seconds until the window resets.

    A fixed one-minute window in the Django cache, so every process shares it when the
    cache is Redis."""
    now = time.time()
    window = int(now // 60)
    key = f"chat-rate:{user.pk}:{window}"
    count = cache_counter_incr(key, timeout=70)
    if count > settings.CHAT_RATE_LIMIT_PER_MINUTE:
        return max(1, int((window + 1) * 60 - now + 0.999))
    return 0


def messages_expire_stale(*, chat: Chat | None = None, message_id: int | None = None) -> int:
    """Mark replies whose run stopped heartbeating as failed (all, one chat's, or one);
    returns how many. Called on reads and, for all of them, by `chats.sweeper` on a timer."""
    cutoff = timezone.now() - timedelta(seconds=STALE_AFTER_SECONDS)
    stale = Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff)
    if chat is not None:
        stale = stale.filter(chat=chat)
    if message_id is not None:
        stale = stale.filter(pk=message_id)
    expired = stale.update(
        status=Message.Status.FAILED, error=STALE_ERROR, updated_at=timezone.now()
    )
    REPLIES_EXPIRED.inc(expired)
    return expired


# Where a new reply goes: after the branch being shown (a new prompt), or beside an earlier
# message (a regenerated reply, an edited prompt) under that message's parent.
AFTER_THE_SHOWN_BRANCH = object()


def _reply_store(*, chat: Chat, parent_id, prompt: str | None = None):
    """Under the chat's lock: the busy check, then the prompt (if any, as a child of
    `parent_id`) and an empty `streaming` reply after it, which becomes the chat's current leaf.

    Returns (question or None, reply). Raises ChatBusy when a reply is still running, and
    Chat.DoesNotExist when the chat was deleted meanwhile."""
    # Lock the chat row so two concurrent prompts cannot both pass the busy check; the same
    # statement reads the branch being shown and the reply still running, if any.
    found = (
        Chat.objects.select_for_update()
        .filter(pk=chat.pk)
        .annotate(
            running_id=Subquery(
                Message.objects.filter(chat=OuterRef("pk"), status=Message.Status.STREAMING)
                .order_by()
                .values("pk")[:1]
            )
        )
        .order_by()
        .values_list("current_leaf_id", "running_id")[:1]
    )
    if not found:
        raise Chat.DoesNotExist("The chat was deleted.")
    leaf_id, running_id = found[0]
    # A running reply whose run was lost (stale) no longer blocks the chat.
    if running_id is not None and not messages_expire_stale(message_id=running_id):
        raise ChatBusy(Message.objects.get(pk=running_id))
    if parent_id is AFTER_THE_SHOWN_BRANCH:
        parent_id = leaf_id or (
            Message.objects.filter(chat=chat).order_by("-id").values_list("id", flat=True).first()
        )
    question = None
    if prompt is not None:
        question = Message.objects.create(
            chat=chat, parent_id=parent_id, role=Message.Role.USER, content=prompt
        )
        parent_id = question.pk
    reply = Message.objects.create(
        chat=chat, parent_id=parent_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING
    )
    chat.current_leaf = reply
    if not chat.title and prompt is not None:
        chat.title = chat_title_from_prompt(prompt)
    chat.save(update_fields=["title", "current_leaf", "updated_at"])
    return question, reply


def _chat_message_parent(chat: Chat, message_id: int, role: str, what: str) -> int | None:
    found = Message.objects.filter(chat=chat, pk=message_id, role=role).values_list(
        "parent_id", flat=True
    )
    if not found:
        raise ChatInputError(f"This chat has no {what} {message_id}.", "message_not_found")
    return found[0]


def message_send(*, chat: Chat, prompt: object) -> tuple[Message, Message]:
    """Store the prompt after the branch being shown, and an empty `streaming` reply, before
    anything is generated. Raises ChatInputError for a bad prompt, ChatBusy while a reply runs."""
    content = prompt_clean(prompt)
    with transaction.atomic():
        return _reply_store(chat=chat, parent_id=AFTER_THE_SHOWN_BRANCH, prompt=content)


def reply_regenerate(*, chat: Chat, reply_id: int) -> Message:
    """A new reply to the prompt that `reply_id` answered; the earlier reply stays, as an
    alternative (its sibling)."""
    with transaction.atomic():
        parent_id = _chat_message_parent(chat, reply_id, Message.Role.ASSISTANT, "reply")
        return _reply_store(chat=chat, parent_id=parent_id)[1]


def prompt_edit(*, chat: Chat, message_id: int, prompt: object) -> tuple[Message, Message]:
    """The edited prompt as an alternative of prompt `message_id` (the conversation branches
    there; the earlier branch stays), and an empty reply to it."""
    content = prompt_clean(prompt)
    with transaction.atomic():
        parent_id = _chat_message_parent(chat, message_id, Message.Role.USER, "prompt")
        return _reply_store(chat=chat, parent_id=parent_id, prompt=content)


def branch_switch(*, chat: Chat, message_id: int) -> Chat:
    """Show the branch through `message_id`, as it was last continued."""
    tree = chat_tree(chat_id=chat.pk)
    if message_id not in tree.messages:
        raise ChatInputError(f"This chat has no message {message_id}.", "message_not_found")
    current = tree.default_leaf(chat)
    if current is not None and message_id in {m.pk for m in tree.path_to(current)}:
        return chat  # already shown
    chat.current_leaf_id = tree.newest_leaf_below(message_id)
    chat.save(update_fields=["current_leaf"])
    return chat


def message_flush(*, message_id: int, content: str) -> bool:
    """Store the text so far; doubles as the run's heartbeat. False when the reply is no
    longer streaming (stopped elsewhere, expired, deleted): the run should give up."""
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, updated_at=timezone.now()
    )
    return updated > 0


def message_finish(*, message_id: int, content: str, status: str, error: str = "") -> bool:
    """Give a streaming reply its final text and status (complete, stopped or failed)."""
    if status == Message.Status.STREAMING:
        raise ValueError("A finished reply needs a final status.")
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, status=status, error=error, updated_at=timezone.now()
    )
    return updated > 0


def message_stop(*, message: Message) -> bool:
    """Mark a reply stopped with the text stored so far. Used when no run answers a stop
    (it was lost); a live run stops itself and stores its own buffer."""
    updated = Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(
        status=Message.Status.STOPPED, updated_at=timezone.now()
    )
    return updated > 0
