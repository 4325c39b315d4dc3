"""Writes the model a chat's replies are generated with (the choices: chats.assistants.catalog)."""

from __future__ import annotations

from chats.assistants.catalog import chat_model_clean
from chats.models import Chat


def chat_model_set(*, chat: Chat, model: object) -> Chat:
    """Store `model` ("" or None: the default) on `chat`; ModelChoiceError when the assistant
    server does not offer it."""
    chat.model = chat_model_clean(model)
    chat.save(update_fields=["model", "updated_at"])
    return chat
