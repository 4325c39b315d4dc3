from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chats.models import Chat, Message
from chats.services import chat_create, message_finish, message_send
from organizations.services import membership_add, organization_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization, title="Night shift")


def test_alice_lists_her_chats(alice_api, chat):
    response = alice_api.get("/api/v1/chats")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    [item] = body["results"]
    assert item["id"] == chat.pk
    assert item["title"] == "Night shift"
    assert item["organization"] == chat.organization_id
    assert set(item) == {"id", "organization", "title", "model", "created_at", "updated_at"}


def test_the_chat_list_is_paginated(alice_api, alice, organization):
    for n in range(3):
        chat_create(user=alice, organization=organization, title=f"Chat {n}")
    body = alice_api.get("/api/v1/chats?limit=2").json()
    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"] is not None


def test_the_chat_list_has_a_query_budget(
    alice_api, alice, organization, django_assert_num_queries
):
    for n in range(5):
        chat_create(user=alice, organization=organization, title=f"Chat {n}")
    alice_api.get("/api/v1/chats")  # the token's first use writes last_used_at once
    # token lookup, count, page
    with django_assert_num_queries(3):
        assert len(alice_api.get("/api/v1/chats").json()["results"]) == 5


def test_bob_and_charlie_list_none_of_alices_chats(bob_api, charlie_api, chat):
    assert bob_api.get("/api/v1/chats").json()["results"] == []
    assert charlie_api.get("/api/v1/chats").json()["results"] == []


def test_create_uses_the_only_organization_when_omitted(alice_api, organization):
    response = alice_api.post("/api/v1/chats", {}, format="json")
    assert response.status_code == 201
    assert response.json()["organization"] == organization.pk
    assert response.json()["title"] == ""


def test_create_with_an_explicit_organization_and_title(alice_api, organization):
    response = alice_api.post(
        "/api/v1/chats", {"organization": organization.pk, "title": " Yard "}, format="json"
    )
    assert response.status_code == 201
    assert Chat.objects.get(pk=response.json()["id"]).title == "Yard"


def test_create_asks_for_the_organization_when_the_user_has_several(alice, alice_api):
    organization_create(name="Second", owner=alice)
    response = alice_api.post("/api/v1/chats", {}, format="json")
    assert response.status_code == 400
    assert 'pass "organization"' in response.json()["error"]
    assert not Chat.objects.exists()


def test_create_refuses_an_organization_the_user_is_not_in(alice_api, charlie_organization):
    response = alice_api.post(
        "/api/v1/chats", {"organization": charlie_organization.pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["fields"]["organization"] == [
        f"You are not a member of an organization {charlie_organization.pk}."
    ]
    missing = alice_api.post("/api/v1/chats", {"organization": 99999}, format="json")
    assert missing.json()["fields"]["organization"] == [
        "You are not a member of an organization 99999."
    ]


@pytest.mark.parametrize(
    "body",
    [{"organization": "x"}, {"organization": 0}, {"title": "x" * 121}, ["list"], {"title": ["x"]}],
)
def test_create_refuses_malformed_bodies(alice_api, organization, body):
    response = alice_api.post("/api/v1/chats", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_create_refuses_invalid_json(alice_api):
    response = alice_api.post("/api/v1/chats", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed"


def test_api_needs_authentication(chat):
    from rest_framework.test import APIClient

    for method, path in [
        ("get", "/api/v1/chats"),
        ("post", "/api/v1/chats"),
        ("get", f"/api/v1/chats/{chat.pk}"),
        ("patch", f"/api/v1/chats/{chat.pk}"),
        ("delete", f"/api/v1/chats/{chat.pk}"),
        ("get", f"/api/v1/chats/{chat.pk}/messages"),
    ]:
        response = getattr(APIClient(), method)(path, format="json")
        assert response.status_code == 401, path
        assert response.json()["code"] == "not_authenticated"


def test_alice_reads_renames_and_deletes_her_chat(alice_api, chat):
    assert alice_api.get(f"/api/v1/chats/{chat.pk}").json()["title"] == "Night shift"
    renamed = alice_api.patch(f"/api/v1/chats/{chat.pk}", {"title": "Day shift"}, format="json")
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "Day shift"
    assert alice_api.delete(f"/api/v1/chats/{chat.pk}").status_code == 204
    assert not Chat.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": ""}, "The title must not be empty."),
        ({"title": None}, "The title must be a string."),
        ({"title": "x" * 121}, "The title is longer than 120 characters."),
    ],
)
def test_rename_validates_the_title(alice_api, chat, body, message):
    response = alice_api.patch(f"/api/v1/chats/{chat.pk}", body, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["title"] == [message]


def test_bob_and_charlie_get_404_on_every_chat_endpoint(bob_api, charlie_api, chat):
    for client in (bob_api, charlie_api):
        for method, path, body in [
            ("get", f"/api/v1/chats/{chat.pk}", None),
            ("patch", f"/api/v1/chats/{chat.pk}", {"title": "Mine now"}),
            ("delete", f"/api/v1/chats/{chat.pk}", None),
            ("get", f"/api/v1/chats/{chat.pk}/messages", None),
        ]:
            response = getattr(client, method)(path, body, format="json")
            assert response.status_code == 404, (method, path)
            assert response.json() == {"error": "Not found.", "code": "not_found"}
    chat.refresh_from_db()
    assert chat.title == "Night shift"


def test_a_former_member_loses_access(alice, alice_api, organization, chat):
    from organizations.models import Membership

    Membership.objects.filter(user=alice, organization=organization).delete()
    assert alice_api.get(f"/api/v1/chats/{chat.pk}").status_code == 404
    membership_add(organization=organization, user=alice, role="owner")
    assert alice_api.get(f"/api/v1/chats/{chat.pk}").status_code == 200


def test_messages_list_with_status_ids_and_times(alice_api, chat):
    question, reply = message_send(chat=chat, prompt="Who is on the team?")
    message_finish(message_id=reply.pk, content="Alice and Bob.", status="complete")
    response = alice_api.get(f"/api/v1/chats/{chat.pk}/messages")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(m["id"], m["role"], m["content"], m["status"]) for m in results] == [
        (question.pk, "user", "Who is on the team?", "complete"),
        (reply.pk, "assistant", "Alice and Bob.", "complete"),
    ]
    assert results[1]["created_at"] and results[1]["updated_at"] and results[1]["error"] == ""


def test_messages_list_expires_a_lost_reply(alice_api, chat):
    _, reply = message_send(chat=chat, prompt="hi")
    Message.objects.filter(pk=reply.pk).update(updated_at=timezone.now() - timedelta(minutes=2))
    results = alice_api.get(f"/api/v1/chats/{chat.pk}/messages").json()["results"]
    assert results[1]["status"] == "failed"


def test_messages_list_has_a_query_budget(alice_api, chat, django_assert_num_queries):
    for n in range(4):
        _, reply = message_send(chat=chat, prompt=f"question {n}")
        message_finish(message_id=reply.pk, content="answer", status="complete")
    alice_api.get(f"/api/v1/chats/{chat.pk}/messages")
    # token lookup, chat, stale expiry, the chat's tree (paged in Python: one query)
    with django_assert_num_queries(4):
        assert len(alice_api.get(f"/api/v1/chats/{chat.pk}/messages").json()["results"]) == 8
