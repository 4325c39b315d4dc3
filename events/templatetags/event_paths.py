"""`{% event_path event %}`: the path of a tracked object drawn over its snapshot, as SVG.

The path's boxes are stored as fractions of the frame (`events.tracking.Path`), so the drawing
uses a 0..1 view box stretched over the picture and fits it at any size. The line joins the
boxes' bottom centres, where an object meets the ground (its feet, a car's wheels), which
shows where it went better than the middle of the box.
"""

from __future__ import annotations

from django import template

from events.models import DetectionEvent

register = template.Library()


def _foot(point: list[float]) -> tuple[float, float]:
    _, x, y, width, height = point
    return round(x + width / 2, 4), round(y + height, 4)


@register.inclusion_tag("events/_path.html")
def event_path(event: DetectionEvent) -> dict:
    path = event.path or []
    if len(path) < 2:
        return {"points": None}
    feet = [_foot(point) for point in path]
    return {
        "label": event.label,
        "points": " ".join(f"{x},{y}" for x, y in feet),
        "start": feet[0],
        "end": feet[-1],
        "count": len(path),
    }
