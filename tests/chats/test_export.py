from __future__ import annotations

import pytest

from chats.branches import chat_branch
from chats.models import Chat, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(alice, organization):
    return Chat.objects.create(user=alice, organization=organization, title="Night shift: dock")


@pytest.fixture
def branched(chat):
    """A prompt with two replies; the second was regenerated and is shown, and was followed."""
    prompt = Message.objects.create(chat=chat, role="user", content="Who is on shift?")
    first = Message.objects.create(
        chat=chat,
        role="assistant",
        content="Dana.",
        parent=prompt,
        status="failed",
        error="The model timed out.",
    )
    second = Message.objects.create(
        chat=chat, role="assistant", content="Dana and Eli.", parent=prompt
    )
    follow_up = Message.objects.create(chat=chat, role="user", content="Thanks", parent=second)
    chat.current_leaf = follow_up
    chat.save()
    return prompt, first, second, follow_up


def test_the_branch_is_walked_from_the_current_leaf(chat, branched):
    prompt, _, second, follow_up = branched
    assert chat_branch(chat=chat) == [prompt, second, follow_up]


def test_a_chat_without_a_current_leaf_shows_its_newest_branch(chat):
    one = Message.objects.create(chat=chat, role="user", content="one")
    two = Message.objects.create(chat=chat, role="assistant", content="two", parent=one)
    assert chat_branch(chat=chat) == [one, two]


def test_markdown_is_the_default_and_shows_the_branch(alice_api, chat, branched):
    response = alice_api.get(f"/api/v1/chats/{chat.pk}/export")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="night-shift-dock.md"'
    text = response.content.decode()
    assert text.startswith("# Night shift: dock\n")
    assert "Alice Co" in text
    assert text.count("## You") == 2 and text.count("## Assistant") == 1
    assert text.index("Who is on shift?") < text.index("Dana and Eli.") < text.index("Thanks")
    assert "Dana.\n" not in text  # the other branch's reply
    assert " UTC*" in text


def test_json_has_every_message_of_every_branch_oldest_first(alice_api, chat, branched, settings):
    response = alice_api.get(f"/api/v1/chats/{chat.pk}/export?format=json")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="night-shift-dock.json"'
    body = response.json()
    assert body["chat"] == {
        "id": chat.pk,
        "title": "Night shift: dock",
        "organization": "Alice Co",
        "model": settings.ASSISTANT_MODEL,
        "created_at": body["chat"]["created_at"],
    }
    prompt, first, second, follow_up = branched
    assert [m["id"] for m in body["messages"]] == [prompt.pk, first.pk, second.pk, follow_up.pk]
    assert body["messages"][1] == {
        "id": first.pk,
        "parent": prompt.pk,
        "role": "assistant",
        "content": "Dana.",
        "status": "failed",
        "error": "The model timed out.",
        "created_at": body["messages"][1]["created_at"],
    }
    assert body["messages"][0]["parent"] is None


def test_the_chats_own_model_is_exported(alice_api, chat):
    chat.model = "llama3"
    chat.save()
    assert (
        alice_api.get(f"/api/v1/chats/{chat.pk}/export?format=json").json()["chat"]["model"]
        == "llama3"
    )


def test_a_failed_reply_says_so_in_markdown(alice_api, chat):
    failed = Message.objects.create(
        chat=chat, role="assistant", content="", status="failed", error="The model timed out."
    )
    chat.current_leaf = failed
    chat.save()
    text = alice_api.get(f"/api/v1/chats/{chat.pk}/export").content.decode()
    assert "> Failed: The model timed out." in text


def test_an_untitled_chat_is_named_by_its_id(alice_api, alice, organization):
    chat = Chat.objects.create(user=alice, organization=organization)
    response = alice_api.get(f"/api/v1/chats/{chat.pk}/export")
    assert response["Content-Disposition"] == f'attachment; filename="chat-{chat.pk}.md"'
    assert response.content.decode().startswith("# New chat\n")


def test_an_unknown_format_is_a_400(alice_api, chat):
    response = alice_api.get(f"/api/v1/chats/{chat.pk}/export?format=pdf")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "markdown, json" in response.json()["error"]


def test_bob_and_charlie_get_a_404(bob_api, charlie_api, chat):
    for api in (bob_api, charlie_api):
        for suffix in ("", "?format=json"):
            response = api.get(f"/api/v1/chats/{chat.pk}/export{suffix}")
            assert response.status_code == 404
            assert response.json() == {"error": "Not found.", "code": "not_found"}


def test_anonymous_is_refused(client, chat):
    response = client.get(f"/api/v1/chats/{chat.pk}/export")
    assert response.status_code in (401, 403) and "error" in response.json()


def test_an_id_out_of_range_is_a_404(alice_api):
    response = alice_api.get(f"/api/v1/chats/{2**63}/export")
    assert response.status_code == 404


def test_export_has_a_query_budget(alice_api, chat, branched, django_assert_num_queries):
    alice_api.get(f"/api/v1/chats/{chat.pk}/export")
    # token with user, chat with organization, messages
    with django_assert_num_queries(3):
        assert alice_api.get(f"/api/v1/chats/{chat.pk}/export").status_code == 200
