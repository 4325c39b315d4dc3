"""The offline assistant: deterministic answers from the organization's own data.

It recognises a few kinds of question by their words (members and roles, chats, the
organization, and any facts other apps contribute, such as cameras) and answers each from the
context. For anything else it says plainly what it can answer instead of inventing analysis.
Everything taken from the context (names, titles, facts) is put into the Markdown reply through
`markdown_literal`, so a member or organization named like a link shows as text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

from chats.assistants.base import AssistantContext, Turn
from chats.markdown_rendering import markdown_literal

GREETING_WORDS = {"hello", "hi", "hey", "hallo", "morning", "evening"}
MEMBER_WORDS = {"member", "who", "team", "people", "user", "role", "owner", "admin", "staff"}
CHAT_WORDS = {"chat", "conversation", "history"}
ORGANIZATION_WORDS = {"organization", "organisation", "org", "company"}
# Asked about video without any camera facts available: say so rather than guess.
CAMERA_WORDS = {"camera", "video", "detection", "event", "saw", "see", "seen", "motion", "stream"}
HELP_WORDS = {"help", "can", "what"}


def _words(text: str) -> set[str]:
    # Crude singular: "members" asks the same as "member".
    return {
        word[:-1] if len(word) > 3 and word.endswith("s") else word
        for word in re.findall(r"[a-z]+", text.lower())
    }


def _capabilities(context: AssistantContext) -> str:
    lines = [
        f"I answer from {markdown_literal(context.organization_name)}'s own data. You can ask me:",
        "",
        "- who the members are and their roles",
        "- how many chats you have",
        "- which organization this is",
    ]
    lines.extend(f"- about {markdown_literal(group.topic)}" for group in context.facts)
    if context.data is not None:
        lines.extend(f"- {capability}" for capability in context.data.capabilities)
    if context.fact_group("cameras") is None and context.data is None:
        lines.extend(["", "Camera data is not available to me yet."])
    return "\n".join(lines)


async def builtin_answer(prompt: str, context: AssistantContext) -> str:
    """The whole reply to `prompt`; the same prompt and context always give the same text."""
    words = _words(prompt)
    name = markdown_literal(context.organization_name)
    sections: list[str] = []
    if words & MEMBER_WORDS:
        count = len(context.members)
        members = "\n".join(
            f"- **{markdown_literal(member.username)}** ({markdown_literal(member.role)})"
            for member in context.members
        )
        sections.append(f"{name} has {count} member{'s' if count != 1 else ''}:\n\n{members}")
    if words & CHAT_WORDS:
        count = context.chat_count
        sections.append(f"You have {count} chat{'s' if count != 1 else ''} in {name}.")
    if words & ORGANIZATION_WORDS:
        sections.append(f"You are asking about **{name}**.")
    asked_about_facts = False
    for group in context.facts:
        if words & set(group.keywords):
            asked_about_facts = True
            facts = (
                "\n".join(f"- {markdown_literal(line)}" for line in await group.lines())
                or "- nothing recorded yet"
            )
            topic = markdown_literal(group.topic.capitalize())
            sections.append(f"{topic} in {name}:\n\n{facts}")
    if (
        not asked_about_facts
        and words & CAMERA_WORDS
        and context.fact_group("cameras") is None
        and context.data is None
    ):
        sections.append(
            f"I have no camera data for {name} yet, so I cannot say what the cameras saw."
        )
    if sections:
        return "\n\n".join(sections)
    if words & GREETING_WORDS:
        return f"Hello {markdown_literal(context.user_name)}! {_capabilities(context)}"
    if words & HELP_WORDS:
        return _capabilities(context)
    return f"I can't answer that from {name}'s data. {_capabilities(context)}"


class BuiltinBackend:
    def __init__(self, *, delay_seconds: float = 0.0):
        self.delay_seconds = delay_seconds

    async def stream(self, turns: Sequence[Turn], context: AssistantContext) -> AsyncIterator[str]:
        prompt = turns[-1].content if turns else ""
        # Questions about the cameras' data are answered from it (with numbers the API
        # returns too); everything else from the context.
        answer = await context.data.answer(prompt) if context.data and prompt else None
        # Word pieces with their leading whitespace, like the seed's " your session data,".
        for piece in re.findall(r"\s*\S+", answer or await builtin_answer(prompt, context)):
            yield piece
            # Even at zero delay, give other streams on the loop their turn.
            await asyncio.sleep(self.delay_seconds)
