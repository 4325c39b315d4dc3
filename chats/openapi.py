"""The schema of the chat endpoints that are plain async views (chats/views.py): sending a
prompt and streaming the reply as Server-Sent Events, resuming a reply, stopping it.

Each class documents one view at both of its paths (/chats/… of the seed, /api/v1/chats/…).
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers

from chats import views
from chats.api import MessageOutputSerializer, MessagePagination
from project.openapi import PlainViewDocumentation, documents

SSE_FRAMING = """Server-Sent Events, the seed's framing byte for byte: each event is one
`data: <JSON>` line and a blank line.

- `{"type": "chunk", "text": "..."}`: the next piece of the reply's text;
- `{"type": "error", "message": "..."}`: the reply failed (sent before `done`);
- `{"type": "done", "message_id": <id>, "status": "complete" | "stopped" | "failed",
  "html": "<sanitized HTML of the Markdown reply>"}`: the end; `"resumable": true` when the
  stream itself failed and the reply may still be completed (resume it).

`: keep-alive` comment lines are sent while the assistant is silent. The `X-Message-Id` header
names the reply before the first event, so a client can stop or resume it. Example:

    data: {"type": "chunk", "text": "Based on"}

    data: {"type": "chunk", "text": " your cameras,"}

    data: {"type": "done", "message_id": 42, "status": "complete", "html": "<p>…</p>"}
"""

SSE_EVENT = {
    "type": "object",
    "description": "One event as an SSE parser reads it; `data` holds the JSON payload.",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["message"]},
        "data": {
            "type": "string",
            "pattern": r'^\{"type": "(chunk|error|done)"',
            "description": "JSON: a `chunk`, `error` or `done` payload (see the operation).",
        },
    },
}
MESSAGE_ID_HEADER = OpenApiParameter(
    "X-Message-Id",
    int,
    OpenApiParameter.HEADER,
    response=[200],
    description="The reply's message id, known before its first event.",
)


def _event_stream(description: str) -> dict:
    return {
        (200, "text/event-stream"): OpenApiResponse(response=SSE_EVENT, description=description)
    }


PromptSerializer = inline_serializer(
    name="Prompt",
    fields={
        "prompt": serializers.CharField(
            max_length=settings.CHAT_PROMPT_MAX_CHARS,
            help_text="The question; not blank. Its length is counted without surrounding spaces.",
        )
    },
)


@documents(views.chat_messages_endpoint)
class ChatMessagesDocumentation(PlainViewDocumentation):
    pagination_class = MessagePagination

    @extend_schema(
        summary="List a chat's messages",
        responses=MessageOutputSerializer(many=True),
    )
    def get(self, request, chat_id: int):
        """Oldest first; a reply whose generation was lost is marked failed before listing."""

    @extend_schema(
        summary="Send a prompt; the reply streams as Server-Sent Events",
        description=SSE_FRAMING,
        request=PromptSerializer,
        parameters=[MESSAGE_ID_HEADER],
        responses={
            **_event_stream("The reply, streamed."),
            409: OpenApiResponse(
                description="A reply is still being generated in this chat (`code` "
                "`reply_in_progress`, its id in `message_id`): wait for it, or stop it."
            ),
            429: OpenApiResponse(description="More prompts than CHAT_RATE_LIMIT_PER_MINUTE."),
        },
        examples=[OpenApiExample("A question", value={"prompt": "Who came to the door today?"})],
    )
    def post(self, request, chat_id: int):
        """Placeholder: see chats.views.message_create_stream."""


@documents(views.message_stream_resume)
class MessageStreamDocumentation(PlainViewDocumentation):
    @extend_schema(
        summary="Resume a reply as Server-Sent Events",
        description="The reply from character `offset` on (or `Last-Event-ID`), then live until "
        "it ends; a finished reply is its rest and `done` at once.\n\n" + SSE_FRAMING,
        parameters=[
            OpenApiParameter(
                "offset",
                {"type": "integer", "minimum": 0, "maximum": 999_999_999_999},
                OpenApiParameter.QUERY,
                description="Characters (code points) of the reply already held.",
            ),
            OpenApiParameter(
                "Last-Event-ID",
                {"type": "string", "pattern": r"^[0-9]{1,12}$"},
                OpenApiParameter.HEADER,
                description="Same as `offset` (used when `offset` is absent).",
            ),
            MESSAGE_ID_HEADER,
        ],
        responses=_event_stream("The rest of the reply, streamed."),
    )
    def get(self, request, chat_id: int, message_id: int):
        """Placeholder: see chats.views.message_stream_resume."""


@documents(views.message_stop_view)
class MessageStopDocumentation(PlainViewDocumentation):
    @extend_schema(
        summary="Stop generating a reply",
        description="Answers the reply as stored: `stopped` with the text so far, or as it "
        "ended if it had already finished.",
        request=None,
        responses=MessageOutputSerializer,
    )
    def post(self, request, chat_id: int, message_id: int):
        """Placeholder: see chats.views.message_stop_view."""


_REPLY_REFUSALS = {
    404: OpenApiResponse(
        description="No such chat, or the message is not a reply (regenerate) or a prompt "
        "(edit) of it (`code` `message_not_found`)."
    ),
    409: OpenApiResponse(
        description="A reply is still being generated in this chat (`code` "
        "`reply_in_progress`, its id in `message_id`): wait for it, or stop it."
    ),
    429: OpenApiResponse(description="More prompts than CHAT_RATE_LIMIT_PER_MINUTE."),
}


@documents(views.reply_regenerate_stream)
class ReplyRegenerateDocumentation(PlainViewDocumentation):
    @extend_schema(
        summary="Regenerate a reply; the new reply streams as Server-Sent Events",
        description="Another reply to the prompt that reply `message_id` answered. The earlier "
        "reply stays as its alternative (both are in each other's `siblings`), and the chat "
        "shows the new one. Counts against the prompt rate limit.\n\n" + SSE_FRAMING,
        request=None,
        parameters=[MESSAGE_ID_HEADER],
        responses={**_event_stream("The new reply, streamed."), **_REPLY_REFUSALS},
    )
    def post(self, request, chat_id: int, message_id: int):
        """Placeholder: see chats.views.reply_regenerate_stream."""


@documents(views.prompt_edit_stream)
class PromptEditDocumentation(PlainViewDocumentation):
    @extend_schema(
        summary="Edit a prompt and resend it; its reply streams as Server-Sent Events",
        description="The edited prompt becomes an alternative of prompt `message_id`: the "
        "conversation branches there and the earlier branch stays reachable (switch back with "
        "`POST /api/v1/chats/{id}/branch`). The reply is generated from the history before the "
        "edited prompt.\n\n" + SSE_FRAMING,
        request=PromptSerializer,
        parameters=[MESSAGE_ID_HEADER],
        responses={
            **_event_stream("The reply to the edited prompt, streamed."),
            **_REPLY_REFUSALS,
        },
        examples=[OpenApiExample("An edit", value={"prompt": "Who came to the back door?"})],
    )
    def post(self, request, chat_id: int, message_id: int):
        """Placeholder: see chats.views.prompt_edit_stream."""
