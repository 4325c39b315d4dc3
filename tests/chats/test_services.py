from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chats.models import Chat, Message
from chats.services import (
    STALE_ERROR,
    ChatBusy,
    ChatInputError,
    chat_create,
    chat_rate_limit_hit,
    chat_rename,
    chat_title_from_prompt,
    message_finish,
    message_flush,
    message_send,
    message_stop,
    messages_expire_stale,
)
from tests.conftest import start_with_room_in_the_window

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(alice, organization) -> Chat:
    return chat_create(user=alice, organization=organization)


def test_title_is_the_prompt_when_short():
    assert chat_title_from_prompt("  Who is   on the team?\n") == "Who is on the team?"


def test_title_is_cut_on_a_word_boundary():
    prompt = "Which cameras saw people near the loading dock between midnight and six this morning?"
    title = chat_title_from_prompt(prompt)
    assert title == "Which cameras saw people near the loading dock between…"
    assert len(title) <= 61


def test_title_of_one_long_word_is_cut_hard():
    assert chat_title_from_prompt("x" * 100) == "x" * 60 + "…"


def test_send_stores_the_prompt_and_a_streaming_reply_and_names_the_chat(chat):
    question, reply = message_send(chat=chat, prompt="  Who is on the team?  ")
    assert (question.role, question.content, question.status) == (
        "user",
        "Who is on the team?",
        "complete",
    )
    assert (reply.role, reply.content, reply.status) == ("assistant", "", "streaming")
    chat.refresh_from_db()
    assert chat.title == "Who is on the team?"


def test_send_keeps_an_existing_title(alice, organization):
    chat = chat_create(user=alice, organization=organization, title="Mine")
    message_send(chat=chat, prompt="Hello")
    chat.refresh_from_db()
    assert chat.title == "Mine"


@pytest.mark.parametrize(
    ("prompt", "code"),
    [
        (None, "prompt_missing"),
        (42, "prompt_invalid"),
        (["hi"], "prompt_invalid"),
        ("", "prompt_empty"),
        ("   \n ", "prompt_empty"),
        ("x" * 8001, "prompt_too_long"),
    ],
)
def test_send_refuses_bad_prompts_and_stores_nothing(chat, prompt, code):
    with pytest.raises(ChatInputError) as raised:
        message_send(chat=chat, prompt=prompt)
    assert raised.value.code == code
    assert not Message.objects.exists()


def test_a_prompt_at_the_limit_is_accepted(chat):
    question, _ = message_send(chat=chat, prompt="x" * 8000)
    assert len(question.content) == 8000


def test_send_refuses_while_a_reply_is_streaming(chat):
    _, reply = message_send(chat=chat, prompt="one")
    with pytest.raises(ChatBusy) as raised:
        message_send(chat=chat, prompt="two")
    assert raised.value.streaming_message == reply
    assert Message.objects.count() == 2


def test_flush_and_finish_only_touch_a_streaming_reply(chat):
    _, reply = message_send(chat=chat, prompt="one")
    assert message_flush(message_id=reply.pk, content="Hel")
    assert message_finish(message_id=reply.pk, content="Hello", status="complete")
    # Finished: later writes (a late run, a second stop) change nothing.
    assert not message_flush(message_id=reply.pk, content="Hello there")
    assert not message_finish(message_id=reply.pk, content="x", status="failed", error="late")
    reply.refresh_from_db()
    assert (reply.content, reply.status, reply.error) == ("Hello", "complete", "")


def test_finish_needs_a_final_status(chat):
    _, reply = message_send(chat=chat, prompt="one")
    with pytest.raises(ValueError):
        message_finish(message_id=reply.pk, content="", status="streaming")


def test_stop_keeps_the_stored_text(chat):
    _, reply = message_send(chat=chat, prompt="one")
    message_flush(message_id=reply.pk, content="Partial")
    assert message_stop(message=reply)
    reply.refresh_from_db()
    assert (reply.content, reply.status) == ("Partial", "stopped")
    assert not message_stop(message=reply)


def test_a_reply_without_heartbeat_for_30_seconds_expires_as_failed(chat):
    _, reply = message_send(chat=chat, prompt="one")
    message_flush(message_id=reply.pk, content="Half an ans")
    Message.objects.filter(pk=reply.pk).update(updated_at=timezone.now() - timedelta(seconds=31))
    assert messages_expire_stale() == 1
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.error) == ("failed", "Half an ans", STALE_ERROR)


def test_a_reply_with_a_recent_heartbeat_does_not_expire(chat):
    _, reply = message_send(chat=chat, prompt="one")
    Message.objects.filter(pk=reply.pk).update(updated_at=timezone.now() - timedelta(seconds=20))
    assert messages_expire_stale() == 0


def test_a_stale_reply_does_not_block_the_chat(chat):
    _, reply = message_send(chat=chat, prompt="one")
    Message.objects.filter(pk=reply.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    _, second = message_send(chat=chat, prompt="two")
    reply.refresh_from_db()
    assert reply.status == "failed"
    assert second.status == "streaming"


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        (5, "must be a string"),
        ("x" * 121, "longer than 120"),
    ],
)
def test_rename_refuses_bad_titles(chat, title, message):
    with pytest.raises(ChatInputError, match=message):
        chat_rename(chat=chat, title=title)


def test_rename_collapses_whitespace(chat):
    assert chat_rename(chat=chat, title="  Night   shift ").title == "Night shift"


def test_rate_limit_counts_per_user_per_minute(alice, bob, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    start_with_room_in_the_window(5, window=60)  # all three of Alice's hits in one minute
    assert chat_rate_limit_hit(user=alice) == 0
    assert chat_rate_limit_hit(user=alice) == 0
    retry_after = chat_rate_limit_hit(user=alice)
    assert 1 <= retry_after <= 60
    assert chat_rate_limit_hit(user=bob) == 0
