"""Template filters for camera health: ages a person reads at a glance ("4 s", "3 min")."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def age(seconds: float | None) -> str:
    """A number of seconds, rounded to the unit that matters at that size."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
