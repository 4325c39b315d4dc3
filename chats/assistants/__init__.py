"""Assistant backends: async streams of text deltas over a chat's history.

Plain Python (no Django models): a backend is any object with
`async def stream(turns, context) -> AsyncIterator[str]`, where `turns` is the chat history
ending with the user's prompt and `context` the organization's facts. It raises
`AssistantError` with a sentence a person can act on when it cannot answer.
"""

from __future__ import annotations

from chats.assistants.base import (
    AssistantContext,
    AssistantError,
    Backend,
    DataSource,
    FactGroup,
    Member,
    Turn,
)

__all__ = [
    "AssistantContext",
    "AssistantError",
    "Backend",
    "DataSource",
    "FactGroup",
    "Member",
    "Turn",
]
