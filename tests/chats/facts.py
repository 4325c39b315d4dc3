"""Fact groups with fixed lines, as tests need them (apps read theirs from the database)."""

from __future__ import annotations

from chats.assistants import FactGroup


def fixed_facts(topic: str, keywords: tuple[str, ...], lines: tuple[str, ...]) -> FactGroup:
    async def read_lines() -> tuple[str, ...]:
        return lines

    return FactGroup(topic, keywords, read_lines)
