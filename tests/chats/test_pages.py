from __future__ import annotations

import json

import pytest

from chats.models import Chat
from chats.services import chat_create, message_finish, message_flush, message_send
from organizations.services import organization_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, alice, organization):
    client.force_login(alice)
    return client


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization, title="Night shift")


def test_pages_need_login(client, chat):
    for path in ["/chats/", f"/chats/{chat.pk}/"]:
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


def test_the_list_shows_an_empty_state(alice_client):
    response = alice_client.get("/chats/")
    assert response.status_code == 200
    assert "No chats yet" in response.content.decode()


def test_the_list_shows_alices_chats_only(alice_client, chat, charlie, charlie_organization):
    chat_create(user=charlie, organization=charlie_organization, title="Charlie's secret")
    page = alice_client.get("/chats/").content.decode()
    assert "Night shift" in page
    assert "Charlie&#x27;s secret" not in page and "Charlie's secret" not in page


def test_the_list_has_a_query_budget(alice_client, alice, organization, django_assert_num_queries):
    for n in range(5):
        chat_create(user=alice, organization=organization, title=f"Chat {n}")
    # session, user, chats with organizations, organizations
    with django_assert_num_queries(4):
        assert alice_client.get("/chats/").status_code == 200


def test_new_chat_creates_one_in_the_chosen_organization(alice_client, alice, organization):
    response = alice_client.post("/chats/new", {"organization": organization.pk})
    chat = Chat.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/chats/{chat.pk}/"
    assert (chat.user, chat.organization) == (alice, organization)


def test_new_chat_refuses_someone_elses_organization(alice_client, charlie_organization):
    response = alice_client.post("/chats/new", {"organization": charlie_organization.pk})
    assert response.status_code == 302
    assert not Chat.objects.exists()
    response = alice_client.post("/chats/new", {"organization": "x"})
    assert not Chat.objects.exists()


def test_the_list_offers_a_choice_of_organization_to_members_of_several(alice_client, alice):
    organization_create(name="Second Co", owner=alice)
    page = alice_client.get("/chats/").content.decode()
    assert '<select name="organization">' in page and "Second Co" in page


def test_the_conversation_shows_the_messages(alice_client, chat):
    _, reply = message_send(chat=chat, prompt="Who is <b>on</b> the team?")
    message_finish(message_id=reply.pk, content="**Alice** and Bob.", status="complete")
    page = alice_client.get(f"/chats/{chat.pk}/").content.decode()
    assert "Who is &lt;b&gt;on&lt;/b&gt; the team?" in page
    assert "<p><strong>Alice</strong> and Bob.</p>" in page


def test_model_html_is_sanitized(alice_client, chat):
    _, reply = message_send(chat=chat, prompt="hi")
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)> [link](javascript:alert(3)) <a href="https://example.org" onclick="x()">ok</a>'
    message_finish(message_id=reply.pk, content=evil, status="complete")
    page = alice_client.get(f"/chats/{chat.pk}/").content.decode()
    article = page.split(f'data-message-id="{reply.pk}"')[1].split("</article>")[0]
    # The source, for the page's own renderer and the copy button, is escaped attribute text.
    assert 'data-source="&lt;script&gt;alert(1)&lt;/script&gt;&lt;img' in article
    bubble = article.split('<div class="bubble">')[1]
    assert "<script" not in bubble and "onerror" not in bubble and "onclick" not in bubble
    assert "javascript:" not in bubble and "<img" not in bubble
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">ok</a>' in bubble


def test_a_streaming_reply_is_handed_to_the_page_for_resuming(alice_client, chat):
    _, reply = message_send(chat=chat, prompt="hi")
    message_flush(message_id=reply.pk, content="So far <i>")
    page = alice_client.get(f"/chats/{chat.pk}/").content.decode()
    data = json.loads(
        page.split('<script id="chat-data" type="application/json">')[1].split("</script>")[0]
    )
    assert data["resume"] == {"messageId": reply.pk, "offset": len("So far <i>")}
    assert data["sendUrl"] == f"/chats/{chat.pk}/messages"
    assert "So far &lt;i&gt;" in page


def test_bob_and_charlie_get_404_for_alices_conversation(
    client, bob, charlie, charlie_organization, chat
):
    for user in (bob, charlie):
        client.force_login(user)
        assert client.get(f"/chats/{chat.pk}/").status_code == 404
        assert client.post(f"/chats/{chat.pk}/rename", {"title": "Mine"}).status_code == 404
        assert client.post(f"/chats/{chat.pk}/delete").status_code == 404
    chat.refresh_from_db()
    assert chat.title == "Night shift"


def test_rename_and_delete_from_the_page(alice_client, chat):
    response = alice_client.post(f"/chats/{chat.pk}/rename", {"title": "Day shift"})
    assert response["Location"] == f"/chats/{chat.pk}/"
    chat.refresh_from_db()
    assert chat.title == "Day shift"
    response = alice_client.post(f"/chats/{chat.pk}/rename", {"title": "  "}, follow=True)
    assert "The title must not be empty." in response.content.decode()
    response = alice_client.post(f"/chats/{chat.pk}/delete")
    assert response["Location"] == "/chats/"
    assert not Chat.objects.exists()


def test_rename_and_delete_need_post(alice_client, chat):
    assert alice_client.get(f"/chats/{chat.pk}/rename").status_code == 405
    assert alice_client.get(f"/chats/{chat.pk}/delete").status_code == 405


def test_the_conversation_has_a_query_budget(alice_client, chat, django_assert_num_queries):
    for n in range(4):
        _, reply = message_send(chat=chat, prompt=f"question {n}")
        message_finish(message_id=reply.pk, content="answer", status="complete")
    # session, user, chat with organization, stale expiry, messages, the sidebar's chats
    with django_assert_num_queries(6):
        assert alice_client.get(f"/chats/{chat.pk}/").status_code == 200


def test_admin_lists_chats_and_messages(admin_client, chat):
    message_send(chat=chat, prompt="hi")
    assert admin_client.get("/admin/chats/chat/?q=Night").status_code == 200
    assert admin_client.get(f"/admin/chats/chat/{chat.pk}/change/").status_code == 200
    assert (
        admin_client.get(
            "/admin/chats/message/?status__exact=streaming&role__exact=user"
        ).status_code
        == 200
    )


def test_new_chat_by_get_leads_to_the_list(client, alice, organization):
    client.force_login(alice)
    response = client.get("/chats/new")
    assert response.status_code == 302 and response["Location"] == "/chats/"
