"""The conversation page as people use it, in a real Chromium against a live daphne: the view
follows a streaming reply, Markdown renders while it streams, the prompt limit, Esc, the
sidebar's rename and delete, copy."""

from __future__ import annotations

import time

import pytest

from chats.models import Chat, Message
from chats.services import chat_create
from tests.chats.fake_openai import reply
from tests.chats.test_browser import LAST_REPLY, serve
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DISTANCE_FROM_BOTTOM = (
    "() => { const l = document.getElementById('messages');"
    " return l.scrollHeight - l.scrollTop - l.clientHeight; }"
)


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # As in test_browser.py: this test's own ORM calls run beside Playwright's event loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def open_chat(page, live_daphne, fake_openai, alice, organization, pieces, delay):
    fake_openai.script = reply(*pieces, delay=delay)
    server = serve(live_daphne, ASSISTANT_BACKEND="openai", OPENAI_BASE_URL=fake_openai.base_url)
    chat = chat_create(user=alice, organization=organization)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    return server, chat


def add_exchange(chat, prompt: str, answer: str) -> Message:
    question = Message.objects.create(
        chat=chat, role="user", content=prompt, parent=chat.current_leaf
    )
    answer_message = Message.objects.create(
        chat=chat, role="assistant", content=answer, parent=question
    )
    Chat.objects.filter(pk=chat.pk).update(current_leaf=answer_message)
    chat.refresh_from_db()
    return answer_message


def test_the_view_follows_a_streaming_reply_until_the_user_scrolls_up(
    page, live_daphne, fake_openai, alice, organization
):
    pieces = [f"Line {n} of a long answer.\n\n" for n in range(60)]
    open_chat(page, live_daphne, fake_openai, alice, organization, pieces, delay=0.1)
    page.fill("#prompt", "Tell me a lot")
    page.press("#prompt", "Enter")
    # Long enough to scroll, still streaming: the latest line stays in view.
    page.wait_for_function(
        "() => { const l = document.getElementById('messages');"
        " return l.scrollHeight > l.clientHeight + 300; }",
        timeout=10000,
    )
    for _ in range(5):
        assert page.get_attribute(LAST_REPLY, "data-status") == "streaming"
        assert page.evaluate(DISTANCE_FROM_BOTTOM) <= 40
        # The reply's end is above the prompt box, never behind it.
        assert page.evaluate(
            f"() => document.querySelector('{LAST_REPLY}').getBoundingClientRect().bottom"
            " <= document.getElementById('prompt-form').getBoundingClientRect().top + 1"
        )
        time.sleep(0.25)
    assert page.is_hidden("#jump-latest")

    # The user scrolls up to read: the view stays there while the reply grows.
    page.hover("#messages")
    page.mouse.wheel(0, -2000)
    page.wait_for_selector("#jump-latest", state="visible", timeout=2000)
    top = page.evaluate("() => document.getElementById('messages').scrollTop")
    time.sleep(0.8)
    assert page.get_attribute(LAST_REPLY, "data-status") == "streaming"
    assert page.evaluate("() => document.getElementById('messages').scrollTop") == top
    assert page.evaluate(DISTANCE_FROM_BOTTOM) > 40

    # "Jump to latest" brings the view back down, and it follows again.
    page.click("#jump-latest")
    assert page.is_hidden("#jump-latest")
    time.sleep(0.5)
    assert page.evaluate(DISTANCE_FROM_BOTTOM) <= 40
    page.wait_for_selector(f"{LAST_REPLY}[data-status=complete]", timeout=15000)
    assert page.evaluate(DISTANCE_FROM_BOTTOM) <= 40


def test_the_page_opens_at_the_latest_message(page, live_daphne, alice, organization):
    server = serve(live_daphne)
    chat = chat_create(user=alice, organization=organization)
    for n in range(30):
        add_exchange(chat, f"Question {n}", f"Answer {n} with **bold** text.")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    page.wait_for_selector(f"{LAST_REPLY} .copy")
    assert page.evaluate(DISTANCE_FROM_BOTTOM) <= 40
    assert page.is_visible(f"{LAST_REPLY} >> text=Answer 29")


def test_markdown_renders_while_the_reply_streams_and_does_not_change_at_the_end(
    page, live_daphne, fake_openai, alice, organization
):
    pieces = [
        "The **members**:\n\n",
        "- Alice\n",
        "- Bob\n",
        '\n<img src="x" onerror="window.pwned=1"> [bad](javascript:window.pwned=1)',
        " and [docs](https://example.com/docs).",
    ]
    server, chat = open_chat(page, live_daphne, fake_openai, alice, organization, pieces, 0.6)
    page.fill("#prompt", "Who is on the team?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(f"{LAST_REPLY} .bubble strong >> text=members", timeout=5000)
    page.wait_for_selector(f"{LAST_REPLY} .bubble li >> text=Alice", timeout=5000)
    assert page.get_attribute(LAST_REPLY, "data-status") == "streaming"

    page.wait_for_selector(f"{LAST_REPLY}[data-status=complete]", timeout=10000)
    html = page.inner_html(f"{LAST_REPLY} .bubble")
    # The model's HTML is shown as text; a javascript: link loses its href; links get rel.
    assert "<img" not in html and "&lt;img" in html
    assert page.evaluate("() => window.pwned") is None
    assert 'href="javascript' not in html
    assert page.get_attribute(f"{LAST_REPLY} a >> text=docs", "rel") == (
        "noopener noreferrer nofollow"
    )
    # History is rendered by the same renderer: a reload looks exactly the same.
    page.reload()
    page.wait_for_selector(f"{LAST_REPLY} .copy")
    assert page.inner_html(f"{LAST_REPLY} .bubble") == html


def test_a_pasted_prompt_over_the_limit_is_kept_whole_and_refused_with_words(
    page, live_daphne, alice, organization
):
    server = serve(live_daphne, CHAT_PROMPT_MAX_CHARS="8000")
    chat = chat_create(user=alice, organization=organization)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    assert page.text_content("#prompt-count") == "0 / 8,000"
    page.evaluate("() => navigator.clipboard.writeText('x'.repeat(9000))")
    page.focus("#prompt")
    page.keyboard.press("Control+V")
    page.wait_for_function("() => document.getElementById('prompt').value.length === 9000")
    assert page.text_content("#prompt-count") == "9,000 / 8,000"
    assert "the limit is 8,000" in page.text_content("#prompt-limit")
    assert page.is_disabled("#send")
    page.press("#prompt", "Enter")
    time.sleep(0.5)
    assert page.locator(".message").count() == 0
    assert not Message.objects.filter(chat=chat).exists()
    assert len(page.input_value("#prompt")) == 9000

    # Shortened to the limit: allowed again.
    page.fill("#prompt", "y" * 8000)
    assert page.text_content("#prompt-count") == "8,000 / 8,000"
    assert page.text_content("#prompt-limit") == ""
    assert page.is_enabled("#send")


def test_escape_stops_a_streaming_reply(page, live_daphne, fake_openai, alice, organization):
    pieces = [f" {n}," for n in range(40)]
    open_chat(page, live_daphne, fake_openai, alice, organization, pieces, delay=0.2)
    page.fill("#prompt", "Count")
    page.press("#prompt", "Enter")
    page.wait_for_function(
        f"() => (document.querySelector('{LAST_REPLY} .bubble')?.textContent || '').length > 8"
    )
    page.keyboard.press("Escape")
    page.wait_for_selector(f"{LAST_REPLY}[data-status=stopped]", timeout=5000)
    assert page.is_visible(f"{LAST_REPLY} >> text=Stopped.")
    assert Message.objects.get(role="assistant").status == "stopped"


def test_the_sidebar_lists_renames_and_deletes_chats(page, live_daphne, alice, bob, organization):
    server = serve(live_daphne)
    oldest = chat_create(user=alice, organization=organization)
    Chat.objects.filter(pk=oldest.pk).update(title="Oldest")
    middle = chat_create(user=alice, organization=organization)
    Chat.objects.filter(pk=middle.pk).update(title="Middle")
    newest = chat_create(user=alice, organization=organization)
    Chat.objects.filter(pk=newest.pk).update(title="Newest")
    chat_create(user=bob, organization=organization)  # someone else's: never listed
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{middle.pk}/")

    titles = page.locator("#chat-nav .chat-nav-title").all_text_contents()
    assert titles == ["Newest", "Middle", "Oldest"]
    assert page.get_attribute("#chat-nav li.current", "data-chat-id") == str(middle.pk)
    assert page.get_attribute("#chat-nav li.current a", "aria-current") == "page"

    # Rename the open chat in place: the heading follows.
    page.click(f"#chat-nav li[data-chat-id='{middle.pk}'] .rename")
    page.fill("#chat-nav li.current input", "Team questions")
    page.press("#chat-nav li.current input", "Enter")
    page.wait_for_selector("#chat-title >> text=Team questions", timeout=5000)
    assert page.text_content("#chat-nav li.current .chat-nav-title") == "Team questions"
    assert Chat.objects.get(pk=middle.pk).title == "Team questions"

    # Esc cancels a rename.
    page.click(f"#chat-nav li[data-chat-id='{oldest.pk}'] .rename")
    page.fill(f"#chat-nav li[data-chat-id='{oldest.pk}'] input", "Never saved")
    page.press(f"#chat-nav li[data-chat-id='{oldest.pk}'] input", "Escape")
    assert Chat.objects.get(pk=oldest.pk).title == "Oldest"

    # Delete another chat: it leaves the list, the page stays.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f"#chat-nav li[data-chat-id='{oldest.pk}'] .delete")
    page.wait_for_selector(f"#chat-nav li[data-chat-id='{oldest.pk}']", state="detached")
    assert not Chat.objects.filter(pk=oldest.pk).exists()

    # Delete the open chat: the page goes to the next one.
    page.click(f"#chat-nav li[data-chat-id='{middle.pk}'] .delete")
    page.wait_for_url(f"{server.url}/chats/{newest.pk}/", timeout=5000)
    assert not Chat.objects.filter(pk=middle.pk).exists()


def test_the_sidebar_collapses_on_a_narrow_screen(page, live_daphne, alice, organization):
    server = serve(live_daphne)
    chat = chat_create(user=alice, organization=organization)
    page.set_viewport_size({"width": 420, "height": 800})
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    assert page.is_hidden("#chat-sidebar")
    page.click("#sidebar-toggle")
    assert page.is_visible("#chat-sidebar")
    assert page.is_visible("#new-chat")


def test_copy_puts_the_message_source_on_the_clipboard(page, live_daphne, alice, organization):
    server = serve(live_daphne)
    chat = chat_create(user=alice, organization=organization)
    add_exchange(chat, "Who?", "**Alice** and Bob.")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    # Times are shown in the browser's zone, from the ISO time the server wrote.
    assert page.get_attribute(f"{LAST_REPLY} time", "datetime")
    assert "UTC" not in page.text_content(f"{LAST_REPLY} time")
    page.click(f"{LAST_REPLY} .copy")
    page.wait_for_selector(".toast >> text=Copied", timeout=3000)
    assert page.evaluate("() => navigator.clipboard.readText()") == "**Alice** and Bob."
