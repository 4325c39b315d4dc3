"""Zones and motion masks: polygons drawn over a camera's picture, stored normalized to it.

A camera's `zones` are named areas ("Driveway"): a tracked object is *in* a zone while the
bottom centre of its box (where a person's feet or a car's wheels meet the ground) lies inside
the polygon, and its event records each zone it entered and when. Its `motion_masks` are areas
the motion detector ignores (a tree in the wind, an on-screen clock).

Both are lists of `{"name": "Driveway", "points": [[x, y], …]}`, each point in fractions of the
frame (0 left/top … 1 right/bottom), so they hold at any resolution and survive a change of
`max_width`. Plain Python: the models validate with it without loading OpenCV, and the pipeline
asks it per detection (a few dozen multiplications each).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError

MAX_POLYGONS = 16
MIN_POINTS = 3
MAX_POINTS = 32
NAME_MAX = 40
_NAME = re.compile(r"^[\w][\w .'-]*$")

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Polygon:
    name: str
    points: tuple[Point, ...]

    def contains(self, x: float, y: float) -> bool:
        """Whether (x, y), in fractions of the frame, lies inside (even-odd rule)."""
        inside = False
        points = self.points
        previous_x, previous_y = points[-1]
        for point_x, point_y in points:
            if (point_y > y) != (previous_y > y):
                crossing = previous_x + (y - previous_y) * (point_x - previous_x) / (
                    point_y - previous_y
                )
                if x < crossing:
                    inside = not inside
            previous_x, previous_y = point_x, point_y
        return inside

    def as_dict(self) -> dict:
        return {"name": self.name, "points": [list(point) for point in self.points]}


def polygons_of(value: Sequence[dict]) -> tuple[Polygon, ...]:
    """Stored (validated) polygons as `Polygon`s: hashable, so a camera's config compares."""
    return tuple(
        Polygon(
            name=polygon["name"],
            points=tuple((float(x), float(y)) for x, y in polygon["points"]),
        )
        for polygon in value
    )


def _polygon_errors(index: int, polygon: object, names: set[str]) -> list[str]:
    where = f"Polygon {index + 1}"
    if not isinstance(polygon, dict) or set(polygon) != {"name", "points"}:
        return [f'{where} must be {{"name": …, "points": [[x, y], …]}}.']
    errors = []
    name = polygon["name"]
    if not isinstance(name, str) or not name.strip():
        errors.append(f"{where} needs a name.")
    else:
        if len(name) > NAME_MAX or not _NAME.match(name):
            errors.append(
                f"{where}'s name {name[:NAME_MAX]!r} must be at most {NAME_MAX} letters, "
                "digits, spaces, dots, apostrophes, dashes or underscores, starting with a "
                "letter or digit."
            )
        elif name.casefold() in names:
            errors.append(f"Two polygons are named {name!r}; each name may be used once.")
        names.add(name.casefold())
        where = repr(name)
    points = polygon["points"]
    if not isinstance(points, list) or not MIN_POINTS <= len(points) <= MAX_POINTS:
        errors.append(f"{where} needs {MIN_POINTS} to {MAX_POINTS} points.")
        return errors
    for point in points:
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
                for v in point
            )
        ):
            errors.append(
                f"{where}'s points must be [x, y] pairs in fractions of the frame (0 to 1); "
                f"got {str(point)[:40]}."
            )
            break
    else:
        if _area(points) < 1e-5:
            errors.append(f"{where} encloses no area: its points lie on a line.")
    return errors


def _area(points: list[list[float]]) -> float:
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2


def validate_polygons(value: object) -> None:
    """Zones' or masks' stored shape; every problem named, so an editor can show them all."""
    if not isinstance(value, list):
        raise ValidationError("Must be a list of polygons.", code="invalid_polygons")
    if len(value) > MAX_POLYGONS:
        raise ValidationError(
            f"At most {MAX_POLYGONS} polygons; got {len(value)}.", code="invalid_polygons"
        )
    names: set[str] = set()
    errors = [
        error
        for index, polygon in enumerate(value)
        for error in _polygon_errors(index, polygon, names)
    ]
    if errors:
        raise ValidationError(errors, code="invalid_polygons")


def zones_containing(
    zones: Sequence[Polygon], bbox: Sequence[float], frame_size: tuple[int, int]
) -> list[str]:
    """The names of the zones a box (x, y, w, h in pixels of a frame of `frame_size`) is in:
    those holding the bottom centre of the box."""
    x, y, width, height = bbox
    frame_width, frame_height = frame_size
    foot_x = (x + width / 2) / frame_width
    foot_y = (y + height) / frame_height
    return [zone.name for zone in zones if zone.contains(foot_x, foot_y)]
