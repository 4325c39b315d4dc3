"""What the chat assistant knows about an organization's session data, and can look up.

- `session_data_facts(organization)`: a compact summary (per camera: status, events per class
  in the last 24 hours, last session, latest event) that goes into the `openai` backend's
  system prompt. Registered with chats as a context provider.
- `EventsAssistantData`: scoped to one organization in code. The `builtin` backend asks it
  `answer(question)`; the `openai` backend offers its `tool_schemas()` to the model and runs
  the model's calls through `call(name, arguments)`. Every number comes from
  `events.selectors`, the functions the API uses. The async methods do their database work
  through `database_sync_to_async`, off the event loop.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from django.db.models import Count
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cameras.models import Camera
from cameras.zones import NAME_MAX as ZONE_NAME_MAX
from chats.assistants import FactGroup
from events.answers import EVENT_DEFINITION, answer_question, format_time, scope_for
from events.questions import CAPABILITIES
from events.selectors import (
    EventFilter,
    activity_bucket_parse,
    event_activity,
    event_count,
    event_counts_by_label,
    event_latest,
    event_list,
    events_for_organization,
    session_latest,
    sessions_for_organization,
)
from organizations.models import Organization

SUMMARY_MAX_CAMERAS = 20
LIST_EVENTS_MAX = 20
DEFAULT_TOOL_WINDOW = timedelta(hours=24)

_WINDOW_PROPERTIES = {
    "camera": {"type": "string", "description": "Camera name or id; omit for all cameras."},
    "class": {"type": "string", "description": "Detected class, e.g. person, car, motion."},
    "zone": {
        "type": "string",
        "description": "Zone name (e.g. Driveway): only objects that entered it; omit for any.",
    },
    "since": {
        "type": "string",
        "description": "ISO 8601 start (inclusive); default 24 hours before until.",
    },
    "until": {"type": "string", "description": "ISO 8601 end (exclusive); default now."},
}
TOOL_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "count_events",
            "description": (
                f"Count detection events ({EVENT_DEFINITION.lower()}) in a time window, in "
                "total and per class."
            ),
            "parameters": {"type": "object", "properties": _WINDOW_PROPERTIES},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_events",
            "description": "The most recent detection events in a window, newest first, with links.",
            "parameters": {
                "type": "object",
                "properties": {
                    **_WINDOW_PROPERTIES,
                    "limit": {"type": "integer", "minimum": 1, "maximum": LIST_EVENTS_MAX},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "activity",
            "description": "Events started per class per time bucket (e.g. per hour) in a window.",
            "parameters": {
                "type": "object",
                "properties": {
                    **_WINDOW_PROPERTIES,
                    "bucket": {"type": "string", "description": "5m, 15m, 1h (default) or 1d."},
                },
            },
        },
    },
]


class ToolArgumentError(ValueError):
    pass


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {count}" for label, count in counts.items()) or "no events"


def session_data_facts(organization: Organization) -> list[FactGroup]:
    """The compact summary for the system prompt, read only when a reply needs it."""
    return [
        FactGroup(
            topic="session data",
            keywords=(),
            read_lines=partial(database_sync_to_async(_session_data_lines), organization),
        )
    ]


def _session_data_lines(organization: Organization) -> tuple[str, ...]:
    """A few queries per camera, at most SUMMARY_MAX_CAMERAS cameras."""
    scope = scope_for(organization)
    since = scope.now - timedelta(hours=24)
    events = scope.events
    lines = [
        f"Times are in {scope.tz}; now is {format_time(scope.now, scope)} on "
        f"{scope.now.astimezone(scope.tz):%Y-%m-%d}. {EVENT_DEFINITION}. "
        "Link events as /events/<id>.",
    ]
    if not scope.cameras:
        lines.append("The organization has no cameras, so there is no session data.")
        return tuple(lines)
    recent = (
        events.filter(started_at__gte=since)
        .order_by()
        .values("camera_id", "label")
        .annotate(total=Count("id"))
    )
    per_camera: dict[int, dict[str, int]] = {}
    for row in recent:
        per_camera.setdefault(row["camera_id"], {})[row["label"]] = row["total"]
    overall = event_counts_by_label(events=events, filters=EventFilter(since=since))
    lines.append(f"All cameras, last 24 hours: {_counts_text(overall)}.")
    sessions = sessions_for_organization(organization=organization)
    for camera in scope.cameras[:SUMMARY_MAX_CAMERAS]:
        counts = dict(sorted(per_camera.get(camera.pk, {}).items(), key=lambda kv: -kv[1]))
        parts = [f"Camera {camera.name!r} (id {camera.public_id}, {camera.status})"]
        parts.append(f"last 24 hours: {_counts_text(counts)}")
        if camera.zones:
            parts.append("zones: " + ", ".join(zone["name"] for zone in camera.zones))
        session = session_latest(sessions=sessions, camera_public_ids=(camera.public_id,))
        if session is not None:
            end = "running" if session.is_open else format_time(session.ended_at, scope)
            parts.append(
                f"last session {format_time(session.started_at, scope)}–{end}, "
                f"{session.frames_processed} frames at {session.measured_fps:.1f} fps, "
                f"events {_counts_text(session.counts)}"
            )
        latest = event_latest(
            events=events, filters=EventFilter(camera_public_ids=(camera.public_id,))
        )
        if latest is not None:
            parts.append(
                f"latest event: {latest.label} at {format_time(latest.started_at, scope)} "
                f"(/events/{latest.pk})"
            )
        lines.append("; ".join(parts) + ".")
    if len(scope.cameras) > SUMMARY_MAX_CAMERAS:
        lines.append(f"…and {len(scope.cameras) - SUMMARY_MAX_CAMERAS} more cameras.")
    return tuple(lines)


class EventsAssistantData:
    """The organization's session data as the assistant may use it; nothing outside it."""

    capabilities = CAPABILITIES

    def __init__(self, organization: Organization):
        self.organization = organization

    async def answer(self, question: str) -> str | None:
        return await database_sync_to_async(answer_question)(
            organization=self.organization, text=question
        )

    def tool_schemas(self) -> list[dict[str, Any]]:
        return TOOL_SCHEMAS

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool call; the result (or a readable error) as JSON text for the model."""
        tool = {
            "count_events": self._count_events,
            "list_events": self._list_events,
            "activity": self._activity,
        }.get(name)
        if tool is None:
            return json.dumps({"error": f"unknown tool {name!r}"})
        if not isinstance(arguments, dict):
            return json.dumps({"error": "arguments must be a JSON object"})
        try:
            result = await database_sync_to_async(tool)(arguments)
        except ToolArgumentError as exc:
            result = {"error": str(exc)}
        return json.dumps(result, default=str)

    # --- the tools (sync, scoped to self.organization) --------------------------------------

    def _window(self, arguments: dict[str, Any]) -> tuple[EventFilter, datetime, datetime]:
        # Naive times are the organization's, like the times its answers show.
        tz = self.organization.tzinfo

        def moment(key: str) -> datetime | None:
            raw = arguments.get(key)
            if raw in (None, ""):
                return None
            parsed = parse_datetime(str(raw)) if isinstance(raw, str) else None
            if parsed is None:
                raise ToolArgumentError(f"{key} must be an ISO 8601 date-time, got {raw!r}")
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)

        until = moment("until") or timezone.now()
        since = moment("since") or until - DEFAULT_TOOL_WINDOW
        if since >= until:
            raise ToolArgumentError("since must be before until")
        cameras: tuple[str, ...] = ()
        wanted = arguments.get("camera")
        if wanted:
            names = Camera.objects.filter(organization=self.organization)
            match = [
                camera.public_id
                for camera in names
                if str(wanted).lower() in (camera.name.lower(), camera.public_id)
            ]
            if not match:
                known = ", ".join(camera.name for camera in names) or "none"
                raise ToolArgumentError(f"no camera {wanted!r}; the cameras are: {known}")
            cameras = tuple(match)
        label = arguments.get("class")
        zone = arguments.get("zone")
        filters = EventFilter(
            camera_public_ids=cameras,
            labels=(str(label),) if label else (),
            zone=str(zone)[:ZONE_NAME_MAX] if zone else None,
            since=since,
            until=until,
        )
        return filters, since, until

    def _events(self):
        return events_for_organization(organization=self.organization)

    def _count_events(self, arguments: dict[str, Any]) -> dict[str, Any]:
        filters, since, until = self._window(arguments)
        return {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "count": event_count(events=self._events(), filters=filters),
            "by_class": event_counts_by_label(events=self._events(), filters=filters),
        }

    def _list_events(self, arguments: dict[str, Any]) -> dict[str, Any]:
        filters, since, until = self._window(arguments)
        try:
            limit = max(1, min(int(arguments.get("limit") or 10), LIST_EVENTS_MAX))
        except (TypeError, ValueError):
            raise ToolArgumentError("limit must be a whole number") from None
        events = event_list(events=self._events(), filters=filters)[:limit]
        return {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "events": [
                {
                    "id": event.pk,
                    "class": event.label,
                    "camera": event.camera.name,
                    "started_at": event.started_at.isoformat(),
                    "ended_at": event.ended_at.isoformat() if event.ended_at else None,
                    "peak_confidence": event.peak_confidence,
                    "track_id": event.track_id,
                    "zones": [zone.zone for zone in event.zones.all()],
                    "url": f"/events/{event.pk}",
                }
                for event in events
            ],
        }

    def _activity(self, arguments: dict[str, Any]) -> dict[str, Any]:
        filters, since, until = self._window(arguments)
        try:
            bucket = activity_bucket_parse(str(arguments.get("bucket") or "1h"))
            activity = event_activity(
                events=self._events(), since=since, until=until, bucket=bucket, filters=filters
            )
        except ValueError as exc:  # a bad bucket, or too many of them
            raise ToolArgumentError(str(exc)) from None
        return {
            "since": activity.since.isoformat(),
            "until": activity.until.isoformat(),
            "bucket_seconds": int(activity.bucket.total_seconds()),
            "buckets": [start.isoformat() for start in activity.starts],
            "series": activity.series,
        }
