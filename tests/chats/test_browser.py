"""The conversation page in a real Chromium against a live daphne, with a slow assistant
served by a real local OpenAI-compatible server."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from chats.models import Message
from chats.services import chat_create
from tests.chats.fake_openai import reply
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # async code: allow this test's own ORM calls. The live daphne keeps the check on (`serve`).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def serve(live_daphne, **env: str):
    return live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="", **env)


PIECES = ["Counting:"] + [f" {n}," for n in range(1, 16)] + [" **done**."]
FULL_TEXT = "".join(PIECES)
LAST_REPLY = ".message.assistant:last-of-type"


def bubble_length(page) -> int:
    return page.evaluate(
        f"() => (document.querySelector('{LAST_REPLY} .bubble')?.textContent || '').length"
    )


def watch_growth(page, *, until_status: str, limit: float = 20) -> list[int]:
    """Sample the last reply's length until it reaches `until_status`."""
    lengths = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        lengths.append(bubble_length(page))
        status = page.get_attribute(LAST_REPLY, "data-status")
        if status == until_status:
            return lengths
        time.sleep(0.1)
    raise AssertionError(f"the reply did not reach {until_status!r}; lengths: {lengths}")


def test_a_reply_streams_finishes_and_survives_a_reload(
    page, live_daphne, fake_openai, alice, organization
):
    fake_openai.script = reply(*PIECES, delay=0.15)
    server = serve(live_daphne, ASSISTANT_BACKEND="openai", OPENAI_BASE_URL=fake_openai.base_url)
    chat = chat_create(user=alice, organization=organization)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")

    page.fill("#prompt", "Count for me")
    page.press("#prompt", "Enter")
    # The question and an empty reply bubble appear at once; Send is disabled while streaming.
    page.wait_for_selector(".message.user >> text=Count for me", timeout=2000)
    assert page.is_disabled("#send")
    assert page.is_visible("#stop")
    lengths = watch_growth(page, until_status="complete")
    growing = [n for n in lengths if 0 < n < len(FULL_TEXT)]
    assert len(set(growing)) >= 3, lengths
    assert growing == sorted(growing)
    # Finished: rendered as sanitized Markdown.
    assert page.inner_html(f"{LAST_REPLY} .bubble").endswith("<strong>done</strong>.</p>")
    assert page.is_enabled("#send")
    # The first prompt named the chat, and the page shows it without a reload.
    assert page.text_content("#chat-title") == "Count for me"

    # A second prompt; reload while the reply is still streaming.
    page.fill("#prompt", "Again please")
    page.click("#send")
    page.wait_for_function(
        f"() => (document.querySelector('{LAST_REPLY} .bubble')?.textContent || '').length > 15"
    )
    page.reload()
    page.wait_for_selector(f"{LAST_REPLY}[data-status=streaming]", timeout=5000)
    after_reload = bubble_length(page)
    assert 0 < after_reload < len(FULL_TEXT)
    lengths = watch_growth(page, until_status="complete")
    assert max(lengths) > after_reload
    assert (
        page.text_content(f"{LAST_REPLY} .bubble")
        == "Counting: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, done."
    )
    replies = list(
        Message.objects.filter(chat=chat, role="assistant").values_list("content", "status")
    )
    assert replies == [(FULL_TEXT, "complete"), (FULL_TEXT, "complete")]


def test_stop_keeps_the_partial_reply(page, live_daphne, fake_openai, alice, organization):
    fake_openai.script = reply(*PIECES, delay=0.2)
    server = serve(live_daphne, ASSISTANT_BACKEND="openai", OPENAI_BASE_URL=fake_openai.base_url)
    chat = chat_create(user=alice, organization=organization)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    page.fill("#prompt", "Count for me")
    page.press("#prompt", "Enter")
    page.wait_for_function(
        f"() => (document.querySelector('{LAST_REPLY} .bubble')?.textContent || '').length > 12"
    )
    page.click("#stop")
    page.wait_for_selector(f"{LAST_REPLY}[data-status=stopped]", timeout=5000)
    assert page.is_visible(f"{LAST_REPLY} >> text=Stopped.")
    stored = Message.objects.get(chat=chat, role="assistant")
    assert stored.status == "stopped"
    assert FULL_TEXT.startswith(stored.content) and 12 < len(stored.content) < len(FULL_TEXT)


def test_a_prompt_the_server_refuses_shows_a_toast_and_keeps_the_prompt(
    page, live_daphne, alice, organization
):
    # (An over-long prompt is refused by the page itself: see test_browser_ux.py.)
    server = serve(live_daphne)
    chat = chat_create(user=alice, organization=organization)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    chat.delete()  # deleted in another tab: the server refuses the prompt
    page.fill("#prompt", "Anyone there?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".toast.error", timeout=5000)
    assert page.input_value("#prompt") == "Anyone there?"
    assert page.locator(".message").count() == 0
    assert page.is_enabled("#send")


def rename_messages_table(old: str, new: str) -> None:
    # A real database failure, seen by the live daphne: its reads of replies find no table.
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")


def test_a_reply_whose_stream_fails_on_the_server_is_resumed_to_its_end(
    page, live_daphne, fake_openai, alice, organization
):
    # The pause is silence: the page's stream reads the stored reply while the table is away.
    fake_openai.script = reply("Alice", " and **Bob**.", delay=3)
    server = serve(live_daphne, ASSISTANT_BACKEND="openai", OPENAI_BASE_URL=fake_openai.base_url)
    chat = chat_create(user=alice, organization=organization)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    page.fill("#prompt", "Who is on the team?")
    page.press("#prompt", "Enter")
    deadline = time.monotonic() + 10
    while not Message.objects.filter(chat=chat, role="assistant", content="Alice").exists():
        assert time.monotonic() < deadline, "the first piece was never stored"
        time.sleep(0.05)

    rename_messages_table("chats_message", "chats_message_away")
    try:
        deadline = time.monotonic() + 10
        while "The stream of reply" not in server.log():
            assert time.monotonic() < deadline, "the page's stream never failed"
            time.sleep(0.05)
    finally:
        rename_messages_table("chats_message_away", "chats_message")

    # The stream said `failed` but resumable: the page read the reply again, to its stored end.
    page.wait_for_selector(f"{LAST_REPLY}[data-status=complete]", timeout=10000)
    assert page.inner_html(f"{LAST_REPLY} .bubble") == "<p>Alice and <strong>Bob</strong>.</p>"
    assert page.locator(f"{LAST_REPLY} .message-note").count() == 0
