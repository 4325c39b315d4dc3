"""Reads about chats. `chats_for_user` is the one place that decides who sees which chat.

A chat is visible to its own user only, and only while that user is still a member of the
chat's organization. Everyone else (Bob in the same organization, Charlie in another) gets
None here, which every transport turns into a plain 404.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from chats.assistants import AssistantContext, DataSource, FactGroup, Member, Turn
from chats.branches import chat_turns_before
from chats.models import Chat, Message
from organizations.models import Organization
from organizations.selectors import organization_members

# Other apps (cameras, events) add facts for the assistant here from their AppConfig.ready().
ContextProvider = Callable[[Organization], list[FactGroup]]
_context_providers: list[ContextProvider] = []


def context_provider_register(provider: ContextProvider) -> None:
    if provider not in _context_providers:
        _context_providers.append(provider)


def context_provider_unregister(provider: ContextProvider) -> None:
    if provider in _context_providers:
        _context_providers.remove(provider)


# The app whose data the assistant can query while answering (events), if installed.
DataProvider = Callable[[Organization], DataSource]
_data_provider: DataProvider | None = None


def data_provider_register(provider: DataProvider) -> None:
    global _data_provider
    _data_provider = provider


def chats_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Chat]:
    if not user.is_authenticated:
        return Chat.objects.none()
    # Membership is unique per (organization, user), so this join never duplicates a chat.
    return Chat.objects.filter(user=user, organization__memberships__user=user)


def chat_get_for_user(*, user: AbstractBaseUser | AnonymousUser, chat_id: int) -> Chat | None:
    # Every prompt starts here, so the query is kept lean: no ordering (`.first()` would order by
    # the model's ordering, and hashing the selected columns for it cost a third of the lookup)
    # and no join for the user, who is the one given.
    found = list(
        chats_for_user(user=user).select_related("organization").filter(pk=chat_id).order_by()[:1]
    )
    if not found:
        return None
    chat = found[0]
    chat.user = user
    return chat


def chat_messages(*, chat: Chat) -> QuerySet[Message]:
    return Message.objects.filter(chat=chat).order_by("created_at", "id")


def message_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser, chat_id: int, message_id: int
) -> Message | None:
    return (
        Message.objects.filter(chat__in=chats_for_user(user=user), chat_id=chat_id, pk=message_id)
        .select_related("chat")
        .first()
    )


def assistant_context_for_chat(*, chat: Chat) -> AssistantContext:
    """What the assistant knows when answering in `chat`, a chat found through
    `chats_for_user` (so its user is a member of its organization)."""
    organization = chat.organization
    members = tuple(
        Member(username=username, role=role)
        for username, role in organization_members(organization=organization).values_list(
            f"user__{get_user_model().USERNAME_FIELD}", "role"
        )
    )
    facts: list[FactGroup] = []
    for provider in _context_providers:
        facts.extend(provider(organization))
    return AssistantContext(
        organization_name=organization.name,
        user_name=chat.user.get_username(),
        members=members,
        # The chat's user is a member (the chat was found through `chats_for_user`), so these
        # are the chats `chats_for_user` shows in this organization, without its join.
        chat_count=Chat.objects.filter(user_id=chat.user_id, organization=organization).count(),
        facts=tuple(facts),
        data=_data_provider(organization) if _data_provider is not None else None,
        instructions=organization.system_prompt,
    )


def reply_inputs(*, reply: Message) -> tuple[list[Turn], AssistantContext]:
    """What a reply is generated from: the history before it and its organization's context."""
    return chat_turns_before(message=reply), assistant_context_for_chat(chat=reply.chat)
