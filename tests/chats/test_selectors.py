from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chats.assistants import Member, Turn
from chats.selectors import (
    assistant_context_for_chat,
    chat_get_for_user,
    chat_turns_before,
    chats_for_user,
    context_provider_register,
    context_provider_unregister,
    message_get_for_user,
)
from chats.services import branch_switch, chat_create, message_finish, message_send, prompt_edit
from organizations.models import Membership
from tests.chats.facts import fixed_facts

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization, title="Alice's")


def test_alice_sees_her_chat(alice, chat):
    assert list(chats_for_user(user=alice)) == [chat]
    assert chat_get_for_user(user=alice, chat_id=chat.pk) == chat


def test_bob_in_the_same_organization_does_not_see_alices_chat(bob, chat):
    assert list(chats_for_user(user=bob)) == []
    assert chat_get_for_user(user=bob, chat_id=chat.pk) is None


def test_charlie_does_not_see_alices_chat(charlie, charlie_organization, chat):
    assert chat_get_for_user(user=charlie, chat_id=chat.pk) is None


def test_alice_loses_her_chat_when_she_leaves_the_organization(alice, chat):
    Membership.objects.filter(user=alice).delete()
    assert chat_get_for_user(user=alice, chat_id=chat.pk) is None


def test_anonymous_sees_nothing(chat):
    from django.contrib.auth.models import AnonymousUser

    assert list(chats_for_user(user=AnonymousUser())) == []


def test_messages_are_found_only_through_their_own_chat(alice, bob, organization, chat):
    _, reply = message_send(chat=chat, prompt="hi")
    other = chat_create(user=alice, organization=organization)
    assert message_get_for_user(user=alice, chat_id=chat.pk, message_id=reply.pk) == reply
    assert message_get_for_user(user=alice, chat_id=other.pk, message_id=reply.pk) is None
    assert message_get_for_user(user=bob, chat_id=chat.pk, message_id=reply.pk) is None


def test_history_is_every_earlier_message_with_text(chat):
    _, first = message_send(chat=chat, prompt="Who is on the team?")
    message_finish(message_id=first.pk, content="Alice and Bob.", status="complete")
    _, second = message_send(chat=chat, prompt="And their roles?")
    assert chat_turns_before(message=second) == [
        Turn("user", "Who is on the team?"),
        Turn("assistant", "Alice and Bob."),
        Turn("user", "And their roles?"),
    ]


def test_history_reads_only_the_branch_and_skips_empty_replies(chat, django_assert_num_queries):
    _, first = message_send(chat=chat, prompt="Who is on the team?")
    message_finish(message_id=first.pk, content="", status="failed", error="The model failed.")
    _, second = message_send(chat=chat, prompt="Who is on the team, again?")
    message_finish(message_id=second.pk, content="Alice and Bob.", status="complete")
    # Another branch: an edited first prompt, with its own reply; never part of this history.
    _, other = prompt_edit(chat=chat, message_id=first.parent_id, prompt="Which cameras?")
    message_finish(message_id=other.pk, content="None yet.", status="complete")
    branch_switch(chat=chat, message_id=second.pk)
    _, third = message_send(chat=chat, prompt="And their roles?")
    with django_assert_num_queries(1):
        turns = chat_turns_before(message=third)
    assert turns == [
        Turn("user", "Who is on the team?"),
        Turn("user", "Who is on the team, again?"),
        Turn("assistant", "Alice and Bob."),
        Turn("user", "And their roles?"),
    ]
    assert chat_turns_before(message=other) == [Turn("user", "Which cameras?")]


def test_a_chat_is_found_without_reading_its_user_again(alice, chat, django_assert_num_queries):
    with django_assert_num_queries(1):
        found = chat_get_for_user(user=alice, chat_id=chat.pk)
        assert found.user is alice
        assert found.organization.name == "Alice Co"


def test_context_holds_the_organizations_own_data(alice, organization, chat, charlie_organization):
    context = assistant_context_for_chat(chat=chat)
    assert context.organization_name == "Alice Co"
    assert context.user_name == "alice"
    assert set(context.members) == {Member("alice", "owner"), Member("bob", "member")}
    assert context.chat_count == 1
    # Only what other apps contribute (events registers its session-data summary,
    # notifications its alerts line).
    assert {group.topic for group in context.facts} <= {"cameras", "session data", "alerts"}


async def test_other_apps_add_facts_through_a_provider(organization, chat):
    def cameras(org):
        return [fixed_facts("cameras", ("camera",), (f"Front door ({org.name})",))]

    context_provider_register(cameras)
    try:
        context = await sync_to_async(assistant_context_for_chat)(chat=chat)
    finally:
        context_provider_unregister(cameras)
    assert await context.fact_group("cameras").lines() == ("Front door (Alice Co)",)


def test_the_context_carries_the_organizations_instructions(organization, chat):
    organization.system_prompt = "Call the dock camera Dock."
    organization.save()
    chat.refresh_from_db()
    assert assistant_context_for_chat(chat=chat).instructions == "Call the dock camera Dock."
