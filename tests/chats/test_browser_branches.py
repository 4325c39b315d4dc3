"""Regenerate, edit and page through branches, and choose the chat's model, on the
conversation page, in a real Chromium against a live daphne."""

from __future__ import annotations

import pytest

from chats.models import Chat, Message
from chats.services import chat_create
from tests.chats.test_browser import LAST_REPLY, serve
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The last prompt: `:last-of-type` counts articles, and the last article is a reply.
LAST_PROMPT = "#messages .message.user >> nth=-1"
LAST_PROMPT_JS = "[...document.querySelectorAll('#messages .message.user')].at(-1)"


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # As in test_browser.py: this test's own ORM calls run beside Playwright's event loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def ask(page, prompt: str) -> None:
    expected = page.locator("#messages .message").count() + 2
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")
    page.wait_for_function(
        f"() => document.querySelectorAll('#messages .message').length === {expected}"
        f" && document.querySelector('{LAST_REPLY}').dataset.status === 'complete'"
        " && !document.querySelector('#messages.busy')",
        timeout=15000,
    )


def wait_idle(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('#messages.busy')"
        " && !document.querySelector('#messages .message[data-status=streaming]')",
        timeout=15000,
    )


def open_chat(page, live_daphne, alice, organization):
    server = serve(live_daphne)
    chat = chat_create(user=alice, organization=organization)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    return server, chat


def test_regenerate_shows_2_of_2_and_the_earlier_reply_at_1_of_2(
    page, live_daphne, alice, organization
):
    server, chat = open_chat(page, live_daphne, alice, organization)
    ask(page, "Who is on the team?")
    first_text = page.get_attribute(LAST_REPLY, "data-source")
    first_id = page.get_attribute(LAST_REPLY, "data-message-id")

    page.click(f"{LAST_REPLY} button.regenerate")
    page.wait_for_selector(f"{LAST_REPLY} .branch-pager", timeout=5000)
    wait_idle(page)
    assert page.inner_text(f"{LAST_REPLY} .pager-position") == "2/2"
    second_id = page.get_attribute(LAST_REPLY, "data-message-id")
    assert second_id != first_id
    assert page.locator("#messages .message").count() == 2
    replies = Message.objects.filter(chat=chat, role="assistant").order_by("id")
    assert [str(m.pk) for m in replies] == [first_id, second_id]
    assert all(m.status == "complete" for m in replies)

    # Page back to the first reply: it is shown as 1/2 and stays shown after a reload.
    page.click(f"{LAST_REPLY} button[aria-label='Previous version']")
    page.wait_for_function(
        f"() => document.querySelector('{LAST_REPLY}').dataset.messageId === '{first_id}'",
        timeout=5000,
    )
    assert page.inner_text(f"{LAST_REPLY} .pager-position") == "1/2"
    assert page.get_attribute(LAST_REPLY, "data-source") == first_text
    page.goto(f"{server.url}/chats/{chat.pk}/")
    assert page.get_attribute(LAST_REPLY, "data-message-id") == first_id
    assert page.inner_text(f"{LAST_REPLY} .pager-position") == "1/2"


def test_edit_branches_and_the_earlier_branch_stays_reachable(
    page, live_daphne, alice, organization
):
    server, chat = open_chat(page, live_daphne, alice, organization)
    ask(page, "Who is on the team?")
    ask(page, "How many chats do I have?")
    assert page.locator("#messages .message").count() == 4

    last_prompt = page.locator(LAST_PROMPT)
    last_prompt.hover()
    last_prompt.locator("button.edit").click()
    last_prompt.locator(".edit-box textarea").fill("Which organization is this?")
    last_prompt.locator(".edit-box textarea").press("Enter")
    page.wait_for_function(
        f"() => (document.querySelector('{LAST_REPLY}').dataset.source || '').includes('Alice Co')",
        timeout=15000,
    )
    wait_idle(page)
    last_prompt = page.locator(LAST_PROMPT)
    last_prompt.locator(".branch-pager").wait_for(timeout=5000)
    assert last_prompt.locator(".pager-position").inner_text() == "2/2"
    assert last_prompt.get_attribute("data-source") == "Which organization is this?"
    assert page.locator("#messages .message").count() == 4
    assert Message.objects.filter(chat=chat).count() == 6

    # Back to the earlier prompt: its own reply comes with it.
    last_prompt.locator("button[aria-label='Previous version']").click()
    page.wait_for_function(
        f"() => {LAST_PROMPT_JS}.dataset.source === 'How many chats do I have?'", timeout=5000
    )
    assert page.locator(LAST_PROMPT).locator(".pager-position").inner_text() == "1/2"
    assert "chat" in page.get_attribute(LAST_REPLY, "data-source")
    chat.refresh_from_db()
    assert chat.current_leaf.content == page.get_attribute(LAST_REPLY, "data-source")


def test_a_search_hit_on_another_branch_opens_that_branch_at_the_hit(
    page, live_daphne, alice, organization
):
    server = serve(live_daphne)
    chat = chat_create(user=alice, organization=organization)
    prompt = Message.objects.create(chat=chat, role="user", content="Who was at the gate?")
    hidden = Message.objects.create(
        chat=chat, role="assistant", content="A courier with a parcel.", parent=prompt
    )
    shown = Message.objects.create(
        chat=chat, role="assistant", content="Nobody, as far as I know.", parent=prompt
    )
    Chat.objects.filter(pk=chat.pk).update(current_leaf=shown)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    assert page.get_attribute(LAST_REPLY, "data-message-id") == str(shown.pk)

    page.fill(".sidebar-search input[name=q]", "courier")
    page.press(".sidebar-search input[name=q]", "Enter")
    page.wait_for_url("**/chats/search?q=courier")
    page.click(".search-result a")
    page.wait_for_url(f"**/chats/{chat.pk}/?message={hidden.pk}#message-{hidden.pk}")
    assert page.get_attribute(LAST_REPLY, "data-message-id") == str(hidden.pk)
    assert page.inner_text(f"{LAST_REPLY} .pager-position") == "1/2"
    assert page.locator(f"#message-{hidden.pk}").is_visible()


def test_the_chat_offers_the_servers_models_and_remembers_the_choice(
    page, live_daphne, fake_openai, alice, organization
):
    fake_openai.models = ["llama3", "qwen2.5"]
    server = serve(
        live_daphne,
        ASSISTANT_BACKEND="openai",
        OPENAI_BASE_URL=fake_openai.base_url,
        ASSISTANT_MODEL="llama3",
    )
    chat = chat_create(user=alice, organization=organization)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    page.wait_for_selector("#chat-model", state="visible", timeout=5000)
    assert page.locator("#chat-model option").all_inner_texts() == ["llama3 (default)", "qwen2.5"]
    page.select_option("#chat-model", "qwen2.5")
    page.wait_for_selector(".toast:has-text('qwen2.5')", timeout=5000)
    chat.refresh_from_db()
    assert chat.model == "qwen2.5"
    page.reload()
    page.wait_for_selector("#chat-model", state="visible", timeout=5000)
    assert page.input_value("#chat-model") == "qwen2.5"


def test_with_one_model_there_is_nothing_to_choose(page, live_daphne, alice, organization):
    server, _ = open_chat(page, live_daphne, alice, organization)
    page.wait_for_load_state("networkidle")
    assert page.locator("#chat-model").is_hidden()
