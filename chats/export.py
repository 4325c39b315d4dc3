"""A chat written out for the user to keep: JSON with every message of every branch, or
Markdown with the branch the chat shows."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.utils.text import slugify

from chats.branches import chat_branch
from chats.models import Chat, Message
from chats.selectors import chat_messages

EXPORT_FORMATS = ("markdown", "json")
_ROLE_HEADINGS = {Message.Role.USER: "You", Message.Role.ASSISTANT: "Assistant"}


def chat_export_filename(chat: Chat, *, export_format: str) -> str:
    extension = "md" if export_format == "markdown" else "json"
    return f"{slugify(chat.title) or f'chat-{chat.pk}'}.{extension}"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def chat_export_json(chat: Chat) -> dict:
    return {
        "chat": {
            "id": chat.pk,
            "title": chat.display_title,
            "organization": chat.organization.name,
            "model": chat.model or settings.ASSISTANT_MODEL,
            "created_at": chat.created_at.isoformat(),
        },
        "messages": [
            {
                "id": message.pk,
                "parent": message.parent_id,
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "error": message.error,
                "created_at": message.created_at.isoformat(),
            }
            for message in chat_messages(chat=chat)
        ],
    }


def chat_export_markdown(chat: Chat) -> str:
    lines = [
        f"# {chat.display_title}",
        "",
        f"{chat.organization.name} · {chat.model or settings.ASSISTANT_MODEL} · "
        f"started {_time(chat.created_at)}",
    ]
    for message in chat_branch(chat=chat):
        lines += ["", f"## {_ROLE_HEADINGS.get(message.role, message.role)}", ""]
        lines += [f"*{_time(message.created_at)}*", ""]
        lines.append(message.content or "*(no text)*")
        if message.status == Message.Status.FAILED:
            lines += ["", f"> Failed: {message.error}"]
        elif message.status == Message.Status.STOPPED:
            lines += ["", "> Stopped."]
        elif message.status == Message.Status.STREAMING:
            lines += ["", "> Still being written when exported."]
    return "\n".join(lines) + "\n"
