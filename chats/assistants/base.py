"""The shapes every backend shares: history turns, the organization's context, the error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class AssistantError(Exception):
    """The backend could not produce (the rest of) a reply; the message is shown to the user."""


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Member:
    username: str
    role: str


@dataclass(frozen=True)
class FactGroup:
    """Facts another app contributes (session data): a topic, the words that ask about it and
    its lines. Apps add groups through `chats.selectors.context_provider_register`.

    The lines cost queries (a few per camera), so they are read only when a reply needs them,
    at most once per reply: by the builtin backend for a question with one of the `keywords`,
    by the openai backend for its system prompt. `read_lines` does its own database work off
    the event loop."""

    topic: str
    keywords: tuple[str, ...]
    read_lines: Callable[[], Awaitable[tuple[str, ...]]]
    _read: list[tuple[str, ...]] = field(default_factory=list, compare=False, repr=False)

    async def lines(self) -> tuple[str, ...]:
        if not self._read:
            self._read.append(tuple(await self.read_lines()))
        return self._read[0]


class DataSource(Protocol):
    """Data another app lets the assistant query (events: counts, sessions, activity), scoped to
    the chat's organization by that app. Its async methods do their database work off the loop.
    Registered through `chats.selectors.data_provider_register`."""

    capabilities: tuple[str, ...]  # questions it answers, for the builtin's list of abilities

    async def answer(self, question: str) -> str | None:
        """A complete Markdown answer, or None when the question is not about this data."""
        ...

    def tool_schemas(self) -> list[dict[str, Any]]:
        """OpenAI function-calling `tools` that look the data up."""
        ...

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool call; its result as text (JSON) for the model."""
        ...


@dataclass(frozen=True)
class AssistantContext:
    """What the assistant may know: the organization's own data, nothing else."""

    organization_name: str
    user_name: str
    members: tuple[Member, ...]
    chat_count: int
    facts: tuple[FactGroup, ...] = field(default=())
    data: DataSource | None = None
    # The organization's own instructions (Organization.system_prompt), set by its admins.
    instructions: str = ""

    def fact_group(self, topic: str) -> FactGroup | None:
        return next((group for group in self.facts if group.topic == topic), None)

    async def system_prompt(self) -> str:
        lines = [
            f"You are Sightline's assistant for the organization {self.organization_name!r}.",
            "Answer from the facts below; when they do not cover a question, say so plainly "
            "instead of guessing. Answer in Markdown.",
            f"You are talking to {self.user_name}, who has {self.chat_count} chat(s).",
            "Members (username: role):",
            *(f"- {member.username}: {member.role}" for member in self.members),
        ]
        for group in self.facts:
            lines.append(f"{group.topic.capitalize()}:")
            lines.extend(f"- {line}" for line in await group.lines())
        if self.instructions.strip():
            # Last, after Sightline's instructions and the facts: it refines them, it does not
            # replace them (the facts stay the only source of the organization's data).
            lines.append(f"The organization's instructions: {self.instructions.strip()}")
        return "\n".join(lines)


class Backend(Protocol):
    def stream(self, turns: Sequence[Turn], context: AssistantContext) -> AsyncIterator[str]: ...
