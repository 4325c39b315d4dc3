"""Path converters. `<id:…>` is a database id: 1 to 18 ASCII digits, so every value it lets
through fits the 64-bit columns of SQLite and PostgreSQL (`<int:…>` lets any number of digits
through, and SQLite then fails with OverflowError: a 500). A longer path does not match: 404."""

from __future__ import annotations

from django.urls import register_converter


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
