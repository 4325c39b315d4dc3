"""Numbers and times from query strings (and headers), within bounds the database and Python's
datetime can hold.

`int()` takes more than a query parameter should: `int("²")` raises although `"²".isdigit()` is
True, and `int("1" * 30)` is fine until SQLite or PostgreSQL is asked to compare it with a
64-bit column (OverflowError / DataError, a 500). Times near year 1 or 9999 overflow as soon as
anything adds or subtracts a day or a time-zone offset. Every parameter goes through here, as
a plain function for the plain views or a DRF field for serializers; errors say what is allowed.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from rest_framework import serializers

# The largest id any primary key or integer column holds (64-bit signed, both databases).
ID_MAX = 2**63 - 1
# Times outside these bounds are refused: far from datetime's limits, so shifting a bound by
# days or a time zone stays representable, and far beyond any recorded event.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(3000, 1, 1, tzinfo=UTC)
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


class ParamError(ValueError):
    """`message` names the parameter and says what it accepts."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def int_param(raw: str, *, name: str, minimum: int = 0, maximum: int = ID_MAX) -> int:
    """`raw` as a whole number in [minimum, maximum] written in ASCII digits, or ParamError."""
    if _ASCII_DIGITS.fullmatch(raw) is None or not minimum <= int(raw) <= maximum:
        raise ParamError(f"{name} must be a whole number from {minimum} to {maximum}.")
    return int(raw)


def _time_bounds_message(name: str) -> str:
    return f"{name} must be between {EARLIEST_TIME:%Y-%m-%d} and {LATEST_TIME:%Y-%m-%d}."


def time_in_bounds(value: datetime, *, name: str) -> datetime:
    """`value` (aware) unchanged when between EARLIEST_TIME and LATEST_TIME, else ParamError."""
    if not EARLIEST_TIME <= value <= LATEST_TIME:
        raise ParamError(_time_bounds_message(name))
    return value


def date_in_bounds(value: date, *, name: str) -> date:
    if not EARLIEST_TIME.date() <= value <= LATEST_TIME.date():
        raise ParamError(_time_bounds_message(name))
    return value


class IdField(serializers.IntegerField):
    """A primary key or other 64-bit id: 1 to ID_MAX."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(**kwargs)


class BoundedDateTimeField(serializers.DateTimeField):
    """A DateTimeField that refuses times outside EARLIEST_TIME–LATEST_TIME."""

    def to_internal_value(self, value) -> datetime:
        parsed = super().to_internal_value(value)
        try:
            return time_in_bounds(parsed, name=self.field_name)
        except ParamError as exc:
            raise serializers.ValidationError(exc.message) from None
