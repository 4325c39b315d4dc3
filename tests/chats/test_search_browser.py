"""The search page in a real Chromium against a live daphne."""

from __future__ import annotations

import pytest

from chats.models import Chat, Message
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # As in test_browser.py: this test's own ORM calls run beside Playwright's event loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def test_alice_searches_from_the_chat_list_and_opens_the_hit(
    page, live_daphne, alice, organization
):
    server = live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="")
    chat = Chat.objects.create(user=alice, organization=organization, title="Dock")
    message = Message.objects.create(
        chat=chat, role="user", content="<img src=x onerror=alert(1)> the forklift is stuck"
    )
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/")
    page.fill("input[name=q]", "forklift")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/chats/search?q=forklift")
    assert page.inner_text(".search-result mark") == "forklift"
    # The markup in the message is text, not an element.
    assert page.locator(".search-result img").count() == 0
    assert "<img src=x onerror=alert(1)>" in page.inner_text(".search-result .snippet")
    page.click(".search-result a")
    page.wait_for_url(f"**/chats/{chat.pk}/?message={message.pk}#message-{message.pk}")
    assert page.locator(f'[data-message-id="{message.pk}"]').count() == 1


def test_a_search_with_no_hits_says_so(page, live_daphne, alice, organization):
    server = live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/search?q=nothing-like-it")
    assert "No messages match" in page.inner_text("main")
