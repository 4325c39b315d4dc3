"""Reads about events and sessions, shared by the API, the pages, the charts and the assistant.

Scoping happens once, at the start: `events_for_user` / `events_for_organization` (and the
`sessions_…` twins) give the querysets everything else narrows down. The assistant answers
from exactly these functions, so its numbers are the API's numbers.

Counting rule: an event counts in a window `[since, until)` when it *started* in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMinute

from cameras.models import Camera
from events.models import CameraSession, DetectionEvent
from organizations.models import Organization
from organizations.selectors import organizations_for_user

# An activity answer may hold at most this many buckets (the API answers 400 beyond it).
ACTIVITY_MAX_BUCKETS = 500
_BUCKET = re.compile(r"^(\d{1,5})(m|h|d)$")
_BUCKET_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def events_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[DetectionEvent]:
    if not user.is_authenticated:
        return DetectionEvent.objects.none()
    return DetectionEvent.objects.filter(organization__in=organizations_for_user(user=user))


def events_for_organization(*, organization: Organization) -> QuerySet[DetectionEvent]:
    return DetectionEvent.objects.filter(organization=organization)


def sessions_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[CameraSession]:
    if not user.is_authenticated:
        return CameraSession.objects.none()
    return CameraSession.objects.filter(organization__in=organizations_for_user(user=user))


def sessions_for_organization(*, organization: Organization) -> QuerySet[CameraSession]:
    return CameraSession.objects.filter(organization=organization)


@dataclass(frozen=True)
class EventFilter:
    """The API's filters; empty tuples and None mean "any"."""

    camera_public_ids: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    # Classes left out (the events page leaves motion out unless asked for it).
    excluded_labels: tuple[str, ...] = ()
    # True: only tracked objects' events; False: only untracked ones (motion).
    tracked: bool | None = None
    # Only events whose object entered this zone (any case: zone names are unique regardless).
    zone: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    session_id: int | None = None


def _filtered(events: QuerySet[DetectionEvent], filters: EventFilter) -> QuerySet[DetectionEvent]:
    if filters.camera_public_ids:
        events = events.filter(camera__public_id__in=filters.camera_public_ids)
    if filters.labels:
        events = events.filter(label__in=filters.labels)
    if filters.excluded_labels:
        events = events.exclude(label__in=filters.excluded_labels)
    if filters.tracked is not None:
        events = events.filter(track_id__isnull=not filters.tracked)
    if filters.zone:
        # One EventZone row per event and zone: the join cannot count an event twice.
        events = events.filter(zones__zone__iexact=filters.zone)
    if filters.since is not None:
        events = events.filter(started_at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(started_at__lt=filters.until)
    if filters.session_id is not None:
        events = events.filter(session_id=filters.session_id)
    return events


def event_list(
    *, events: QuerySet[DetectionEvent], filters: EventFilter = EventFilter()
) -> QuerySet[DetectionEvent]:
    """Newest first, with the camera and the zones entered loaded (a fixed number of queries
    per page, not one per event)."""
    return (
        _filtered(events, filters)
        .select_related("camera")
        .prefetch_related("zones")
        .order_by("-started_at", "-id")
    )


def event_count(*, events: QuerySet[DetectionEvent], filters: EventFilter = EventFilter()) -> int:
    return _filtered(events, filters).count()


def event_counts_by_label(
    *, events: QuerySet[DetectionEvent], filters: EventFilter = EventFilter()
) -> dict[str, int]:
    """Events per class, most frequent first."""
    rows = (
        _filtered(events, filters)
        .order_by()
        .values("label")
        .annotate(total=Count("id"))
        .order_by("-total", "label")
    )
    return {row["label"]: row["total"] for row in rows}


@dataclass(frozen=True)
class CameraCount:
    public_id: str
    name: str
    total: int


def event_counts_by_camera(
    *, events: QuerySet[DetectionEvent], filters: EventFilter = EventFilter()
) -> list[CameraCount]:
    """Events per camera, busiest first (cameras without events are left out)."""
    rows = (
        _filtered(events, filters)
        .order_by()
        .values("camera__public_id", "camera__name")
        .annotate(total=Count("id"))
        .order_by("-total", "camera__name")
    )
    return [
        CameraCount(
            public_id=row["camera__public_id"], name=row["camera__name"], total=row["total"]
        )
        for row in rows
    ]


def event_latest(
    *, events: QuerySet[DetectionEvent], filters: EventFilter = EventFilter()
) -> DetectionEvent | None:
    return event_list(events=events, filters=filters).first()


def event_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser, event_id: int
) -> DetectionEvent | None:
    return (
        events_for_user(user=user)
        .select_related("camera")
        .prefetch_related("zones")
        .filter(pk=event_id)
        .first()
    )


def event_labels(*, organization_ids: Iterable[int]) -> list[str]:
    """Every class these organizations' events have, sorted, for filters and question
    understanding (every prompt to the assistant reads them).

    `SELECT DISTINCT label` reads every event of the organization: months of events made each
    prompt dearer (90 ms at 200,000 events on PostgreSQL, which has no skip scan). This walks
    the (organization, label) index instead, one seek per class: the next label after the last
    one found, so the cost grows with the classes, not the events."""
    table = connection.ops.quote_name(DetectionEvent._meta.db_table)
    next_label = (
        f"SELECT label FROM {table} WHERE organization_id = %s AND label > labels.label "
        "ORDER BY label LIMIT 1"
    )
    first_label = f"SELECT label FROM {table} WHERE organization_id = %s ORDER BY label LIMIT 1"
    found: set[str] = set()
    with connection.cursor() as cursor:
        for organization_id in organization_ids:
            cursor.execute(
                f"""
                WITH RECURSIVE labels (label) AS (
                    SELECT ({first_label})
                    UNION ALL
                    SELECT ({next_label}) FROM labels WHERE labels.label IS NOT NULL
                )
                SELECT label FROM labels WHERE label IS NOT NULL
                """,
                [organization_id, organization_id],
            )
            found.update(label for (label,) in cursor.fetchall())
    return sorted(found)


@dataclass
class Activity:
    """Events started per class per bucket: `series[label][i]` counts bucket `starts[i]`."""

    since: datetime
    until: datetime
    bucket: timedelta
    starts: list[datetime]
    series: dict[str, list[int]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        return {label: sum(counts) for label, counts in self.series.items()}

    @property
    def bucket_totals(self) -> list[int]:
        return [sum(column) for column in zip(*self.series.values(), strict=True)] or [
            0 for _ in self.starts
        ]


class ActivityTooLarge(ValueError):
    pass


def activity_bucket_parse(value: str) -> timedelta:
    """`5m`, `15m`, `1h`, `1d`: a bucket length in whole minutes, hours or days."""
    match = _BUCKET.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            "bucket must be a whole number of minutes, hours or days, e.g. 5m, 15m, 1h or 1d."
        )
    return int(match.group(1)) * _BUCKET_UNITS[match.group(2)]


def activity_bucket_count(*, since: datetime, until: datetime, bucket: timedelta) -> int:
    span = until - since
    return max(1, -(-span // bucket))  # ceiling division of timedeltas


def event_activity(
    *,
    events: QuerySet[DetectionEvent],
    since: datetime,
    until: datetime,
    bucket: timedelta,
    filters: EventFilter = EventFilter(),
) -> Activity:
    """Counts per class per bucket over `[since, until)`.

    `since` is rounded down to the minute and `bucket` must be whole minutes, so each
    minute of the database's per-minute grouping falls into exactly one bucket: the work is
    one grouped query, whatever the number of events.
    """
    if bucket < timedelta(minutes=1) or bucket % timedelta(minutes=1):
        raise ValueError("bucket must be a whole number of minutes")
    since = since.astimezone(UTC).replace(second=0, microsecond=0)
    count = activity_bucket_count(since=since, until=until, bucket=bucket)
    if count > ACTIVITY_MAX_BUCKETS:
        raise ActivityTooLarge(
            f"{count} buckets requested; at most {ACTIVITY_MAX_BUCKETS}: "
            "choose a larger bucket or a shorter period."
        )
    starts = [since + i * bucket for i in range(count)]
    activity = Activity(since=since, until=until, bucket=bucket, starts=starts)
    narrowed = replace(filters, since=since, until=until)
    rows = (
        _filtered(events, narrowed)
        .order_by()
        .annotate(minute=TruncMinute("started_at", tzinfo=UTC))
        .values("label", "minute")
        .annotate(total=Count("id"))
    )
    for row in rows:
        index = (row["minute"] - since) // bucket
        if 0 <= index < count:
            activity.series.setdefault(row["label"], [0] * count)[index] += row["total"]
    activity.series = dict(sorted(activity.series.items()))
    return activity


def session_list(
    *, sessions: QuerySet[CameraSession], camera: Camera | None = None
) -> QuerySet[CameraSession]:
    if camera is not None:
        sessions = sessions.filter(camera=camera)
    return sessions.select_related("camera").order_by("-started_at", "-id")


def session_latest(
    *, sessions: QuerySet[CameraSession], camera_public_ids: tuple[str, ...] = ()
) -> CameraSession | None:
    if camera_public_ids:
        sessions = sessions.filter(camera__public_id__in=camera_public_ids)
    return session_list(sessions=sessions).first()
