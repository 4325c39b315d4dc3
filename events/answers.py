"""Answers to questions about what an organization's cameras saw, in Markdown, from the selectors.

`answer_question` parses the question (`events.questions`) and answers it with the very
selectors the API uses (`events.selectors`), so a number in an answer is the `count` the API
returns for the same camera, class and window; the answer links to the events page with the
same filters, which lists exactly those events, so anyone can check it. Periods ("today",
"since 9:00") and the times shown are in the organization's time zone (`Organization.tzinfo`).
Sync and database-bound: call it off the event loop.

Names people chose (cameras, the organization, class labels from a model's label file) go in
through `markdown_literal`: they show as written, never as a link or HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import cached_property
from urllib.parse import urlencode

from django.utils import timezone

from cameras.models import Camera
from chats.markdown_rendering import markdown_literal
from events.models import CameraSession
from events.questions import CAPABILITIES, PERIOD_WORDS, Intent, Period, Question, parse_question
from events.selectors import (
    EventFilter,
    event_activity,
    event_count,
    event_counts_by_camera,
    event_counts_by_label,
    event_labels,
    event_latest,
    event_list,
    events_for_organization,
    session_latest,
    sessions_for_organization,
)
from organizations.models import Organization

# Words that ask about the organization itself, not about what the cameras saw: left to the
# chat assistant's own answers unless the question also names a camera or speaks of events.
NOT_ABOUT_EVENTS = {"member", "members", "team", "role", "roles", "user", "users", "chat", "chats"}
ABOUT_EVENTS = {
    "camera", "cameras", "event", "events", "detection", "detections", "detected", "seen",
    "saw", "see", "motion", "activity", "session",
}  # fmt: skip
LINKED_EVENTS = 3
# What the answers count, in the words of the events page and the API.
EVENT_DEFINITION = (
    "An event is one tracked object in view of a camera (for motion, one stretch of it), "
    "counted when it starts"
)


@dataclass(frozen=True)
class Scope:
    """The organization, its cameras and the clock an answer is computed against."""

    organization: Organization
    cameras: list[Camera]
    now: datetime
    tz: tzinfo

    @property
    def events(self):
        return events_for_organization(organization=self.organization)

    @cached_property
    def known_labels(self) -> list[str]:
        """Every class the organization's events have, read once per scope."""
        return event_labels(organization_ids=[self.organization.pk])

    @property
    def zone_names(self) -> list[str]:
        """Every zone drawn on the organization's cameras, as named."""
        return [zone["name"] for camera in self.cameras for zone in camera.zones or []]

    def public_ids(self, names: tuple[str, ...]) -> tuple[str, ...]:
        wanted = {name.lower() for name in names}
        return tuple(camera.public_id for camera in self.cameras if camera.name.lower() in wanted)


def _labels_text(labels: tuple[str, ...], joiner: str) -> str:
    return f" {joiner} ".join(markdown_literal(label) for label in labels)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _events_word(count: int, label: str | None = None) -> str:
    what = f"{markdown_literal(label)} " if label else ""
    return f"**{count} {what}event{'' if count == 1 else 's'}**"


def format_time(moment: datetime, scope: Scope, *, seconds: bool = False) -> str:
    """14:02 today, "yesterday 14:02", or 2026-11-20 14:02, in the organization's time zone."""
    local = moment.astimezone(scope.tz)
    today = scope.now.astimezone(scope.tz).date()
    clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    if local.date() == today:
        return clock
    if local.date() == today - timedelta(days=1):
        return f"yesterday {clock}"
    return f"{local:%Y-%m-%d} {clock}"


def format_span(start: datetime, end: datetime, scope: Scope) -> str:
    """`start`–`end` as format_time writes them, except that an end at the midnight closing
    the start's day is "00:00", not the next day's date (the hour 23:00–00:00 is one hour), and
    that a span across a change of the clocks names the zone at both ends: the hour after 01:00
    on the night clocks go back is "01:00 EDT–01:00 EST", not "01:00–01:00"."""
    local_start, local_end = start.astimezone(scope.tz), end.astimezone(scope.tz)
    closes_start_day = (
        local_end.time() == time() and local_end.date() - local_start.date() == timedelta(days=1)
    )
    start_text = format_time(start, scope)
    end_text = "00:00" if closes_start_day else format_time(end, scope)
    if local_start.utcoffset() != local_end.utcoffset():
        start_text, end_text = f"{start_text} {local_start:%Z}", f"{end_text} {local_end:%Z}"
    return f"{start_text}–{end_text}"


def _window(period: Period, scope: Scope) -> str:
    assert period.start is not None and period.end is not None
    return f"{period.description} ({format_span(period.start, period.end, scope)})"


def _where(question: Question) -> str:
    cameras = (
        "on " + " and ".join(f"**{markdown_literal(name)}**" for name in question.cameras)
        if question.cameras
        else "across all cameras"
    )
    if question.zone is None:
        return cameras
    return f"entering the zone **{markdown_literal(question.zone)}** {cameras}"


def _utc_param(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _page_url(filters: EventFilter, scope: Scope) -> str:
    """The events page showing exactly the events `filters` select in the organization (the
    page filters by one camera and one class, like the API)."""
    params: dict[str, str] = {}
    if len(filters.camera_public_ids) == 1:
        params["camera"] = filters.camera_public_ids[0]
    if len(filters.labels) == 1:
        params["class"] = filters.labels[0]
    else:
        # The page leaves motion out unless asked; the answer counted it.
        params["motion"] = "1"
    if filters.zone:
        params["zone"] = filters.zone
    if filters.since:
        params["since"] = _utc_param(filters.since)
    if filters.until:
        params["until"] = _utc_param(filters.until)
    if filters.session_id:
        params["session"] = str(filters.session_id)
    # The reader may belong to other organizations too: their events stay out of the list.
    params["organization"] = str(scope.organization.pk)
    return f"/events/?{urlencode(params)}"


def _event_links(scope: Scope, filters: EventFilter, limit: int = LINKED_EVENTS) -> str:
    events = list(event_list(events=scope.events, filters=filters)[:limit])
    if not events:
        return ""
    links = ", ".join(
        f"[{markdown_literal(event.label)} on {markdown_literal(event.camera.name)} at "
        f"{format_time(event.started_at, scope, seconds=True)}]"
        f"(/events/{event.pk})"
        for event in events
    )
    return f"Latest: {links}."


def _resolve_session(question: Question, scope: Scope) -> CameraSession | None:
    return session_latest(
        sessions=sessions_for_organization(organization=scope.organization),
        camera_public_ids=scope.public_ids(question.cameras),
    )


def _filters(question: Question, scope: Scope, *, labels=None, period=None) -> EventFilter:
    period = period or question.period
    return EventFilter(
        camera_public_ids=scope.public_ids(question.cameras),
        labels=tuple(labels if labels is not None else question.labels),
        zone=question.zone,
        since=period.start,
        until=period.end,
    )


def _no_cameras(scope: Scope) -> str | None:
    if scope.cameras:
        return None
    return (
        f"{markdown_literal(scope.organization.name)} has no cameras yet, so there is no "
        "session data. "
        "Add one under [Cameras](/cameras/) (a `demo:` camera needs no hardware)."
    )


def _counts_sentence(counts: dict[str, int]) -> str:
    return ", ".join(f"{markdown_literal(label)} {count}" for label, count in counts.items())


def _answer_count(question: Question, scope: Scope) -> str:
    if question.period.last_session:
        return _answer_session(question, scope, only_labels=question.labels)
    period = question.period
    lines = []
    if question.labels:
        for label in question.labels:
            filters = _filters(question, scope, labels=(label,))
            count = event_count(events=scope.events, filters=filters)
            lines.append(
                f"{_events_word(count, label)} {_where(question)} {_window(period, scope)}."
            )
    else:
        filters = _filters(question, scope)
        counts = event_counts_by_label(events=scope.events, filters=filters)
        total = sum(counts.values())
        detail = f": {_counts_sentence(counts)}" if counts else ""
        lines.append(f"{_events_word(total)} {_where(question)} {_window(period, scope)}{detail}.")
    links = _event_links(scope, _filters(question, scope))
    lines.append(links or "Nothing was detected in that window.")
    lines.append(_check_line(question, scope))
    return "\n\n".join(lines)


def _check_line(question: Question, scope: Scope) -> str:
    """Links to the events page listing the answer's events: one per class and camera named
    (the page filters by one of each), summed where the answer names several cameras."""
    wanted = {name.lower() for name in question.cameras}
    cameras = [camera for camera in scope.cameras if camera.name.lower() in wanted]
    links = []
    for label in question.labels or (None,):
        for camera in cameras or (None,):
            filters = EventFilter(
                camera_public_ids=(camera.public_id,) if camera else (),
                labels=(label,) if label else (),
                zone=question.zone,
                since=question.period.start,
                until=question.period.end,
            )
            what = f"{markdown_literal(label)} events" if label else "these events"
            where = f" on {markdown_literal(camera.name)}" if camera else ""
            links.append(f"[{what}{where}]({_page_url(filters, scope)})")
    return f"{EVENT_DEFINITION}; times in {scope.tz}. See {', '.join(links)} on the events page."


def _answer_summary(question: Question, scope: Scope) -> str:
    if question.period.last_session:
        return _answer_session(question, scope)
    filters = _filters(question, scope)
    counts = event_counts_by_label(events=scope.events, filters=filters)
    where = _where(question)
    if not counts:
        return (
            f"Nothing was detected {where} {_window(question.period, scope)}: no events.\n\n"
            + _check_line(question, scope)
        )
    total = sum(counts.values())
    lines = [
        f"{_events_word(total)} {where} {_window(question.period, scope)}:",
        "\n".join(f"- {markdown_literal(label)}: {count}" for label, count in counts.items()),
    ]
    if not question.cameras and len(scope.cameras) > 1:
        per_camera = event_counts_by_camera(events=scope.events, filters=filters)
        lines.append(
            "By camera: "
            + ", ".join(f"{markdown_literal(row.name)} {row.total}" for row in per_camera)
            + "."
        )
    lines.append(_event_links(scope, filters))
    lines.append(_check_line(question, scope))
    return "\n\n".join(lines)


def _answer_busiest_camera(question: Question, scope: Scope) -> str:
    filters = _filters(question, scope)
    rows = event_counts_by_camera(events=scope.events, filters=filters)
    what = _labels_text(question.labels, "and") + " " if question.labels else ""
    if not rows:
        return f"No {what}events on any camera {_window(question.period, scope)}, so no camera was busiest."
    top = rows[0]
    tied = [markdown_literal(row.name) for row in rows if row.total == top.total]
    lead = (
        f"**{tied[0]}** was the busiest camera {_window(question.period, scope)} with "
        f"{_events_word(top.total, ' and '.join(question.labels) or None)}."
        if len(tied) == 1
        else f"{' and '.join(f'**{name}**' for name in tied)} were equally busy "
        f"{_window(question.period, scope)} with {_events_word(top.total)} each."
    )
    rest = ", ".join(f"{markdown_literal(row.name)} {row.total}" for row in rows[1:])
    without = [
        markdown_literal(c.name)
        for c in scope.cameras
        if c.public_id not in {r.public_id for r in rows}
    ]
    parts = [lead]
    if rest:
        parts.append(f"Then: {rest}.")
    if without:
        parts.append(f"No {what}events: {', '.join(without)}.")
    return "\n\n".join(parts)


def _answer_busiest_hour(question: Question, scope: Scope) -> str:
    period = question.period
    assert period.start is not None and period.end is not None
    # Whole clock hours in the organization's zone, so "14:00–15:00" means what it says.
    since = period.start.astimezone(scope.tz).replace(minute=0, second=0, microsecond=0)
    activity = event_activity(
        events=scope.events,
        since=since,
        until=period.end,
        bucket=timedelta(hours=1),
        filters=_filters(question, scope, period=Period(start=None, end=None, description="")),
    )
    totals = activity.bucket_totals
    if not any(totals):
        return f"No events {_where(question)} {_window(period, scope)}, so no hour stands out."
    best = max(range(len(totals)), key=lambda i: (totals[i], -i))
    start = activity.starts[best]
    detail = {label: counts[best] for label, counts in activity.series.items() if counts[best]}
    return (
        f"The busiest hour {_where(question)} {_window(period, scope)} was "
        f"**{format_span(start, start + activity.bucket, scope)}** with "
        f"{_events_word(totals[best])} ({_counts_sentence(detail)})."
    )


def _answer_last_seen(question: Question, scope: Scope) -> str:
    period = question.period if question.period.explicit else None
    labels = question.labels
    filters = EventFilter(
        camera_public_ids=scope.public_ids(question.cameras),
        labels=labels,
        zone=question.zone,
        since=period.start if period else None,
        until=period.end if period else None,
    )
    event = event_latest(events=scope.events, filters=filters)
    what = _labels_text(labels, "or") if labels else "anything"
    if event is None:
        within = f" {_window(period, scope)}" if period else " in the recorded data"
        return f"No {what} was seen {_where(question)}{within}."
    link = f"[event #{event.pk}](/events/{event.pk})"
    if event.is_open:
        return (
            f"A **{markdown_literal(event.label)}** is in view on "
            f"**{markdown_literal(event.camera.name)}** right now (since "
            f"{format_time(event.started_at, scope, seconds=True)}): {link}."
        )
    return (
        f"A **{markdown_literal(event.label)}** was last seen on "
        f"**{markdown_literal(event.camera.name)}** at "
        f"**{format_time(event.last_seen_at, scope, seconds=True)}** (in view for "
        f"{event.duration_seconds:.0f} s from {format_time(event.started_at, scope, seconds=True)}): {link}."
    )


def _change(now_count: int, before: int) -> str:
    if before == 0:
        return "new" if now_count else "no change"
    delta = now_count - before
    return f"{delta:+d}, {delta / before * 100:+.0f} %"


def _answer_compare(question: Question, scope: Scope) -> str:
    if question.period.last_session:
        return "I compare time windows (today, the last hour, since 9:00…), not sessions: " + (
            "ask e.g. “how does today compare with yesterday?”"
        )
    current, previous = question.period, question.period.previous()
    now_counts = event_counts_by_label(events=scope.events, filters=_filters(question, scope))
    before_counts = event_counts_by_label(
        events=scope.events, filters=_filters(question, scope, period=previous)
    )
    labels = list(question.labels) or sorted(set(now_counts) | set(before_counts))
    if not labels or not (any(now_counts.values()) or any(before_counts.values())):
        return (
            f"No events {_where(question)} {_window(current, scope)} nor in the "
            f"period before ({format_time(previous.start, scope)}–{format_time(previous.end, scope)})."
        )
    rows = [
        f"| {markdown_literal(label)} | {now_counts.get(label, 0)} | {before_counts.get(label, 0)} | "
        f"{_change(now_counts.get(label, 0), before_counts.get(label, 0))} |"
        for label in labels
    ]
    total_now = sum(now_counts.get(label, 0) for label in labels)
    total_before = sum(before_counts.get(label, 0) for label in labels)
    return "\n".join(
        [
            f"Events {_where(question)} {_window(current, scope)} against the same length "
            f"of time before ({format_span(previous.start, previous.end, scope)}):",
            "",
            "| class | now | before | change |",
            "|---|---|---|---|",
            *rows,
            "",
            f"In total {total_now} against {total_before} ({_change(total_now, total_before)}).",
        ]
    )


def _answer_session(question: Question, scope: Scope, *, only_labels: tuple[str, ...] = ()) -> str:
    session = _resolve_session(question, scope)
    # A session is a camera's: a zone the question names does not narrow it.
    where = _where(replace(question, zone=None))
    if session is None:
        return f"No camera session has been recorded {where} yet."
    camera = session.camera
    end = (
        f"still running (last frame {format_time(session.last_frame_at, scope, seconds=True)})"
        if session.is_open
        else f"ended {format_time(session.ended_at, scope, seconds=True)}"
    )
    counts = dict(sorted(session.counts.items(), key=lambda item: (-item[1], item[0])))
    if only_labels:
        counts = {label: counts.get(label, 0) for label in only_labels}
    summary = _counts_sentence(counts) if counts else "no events"
    total = sum(counts.values())
    lines = [
        f"**{markdown_literal(camera.name)}**'s last session started "
        f"{format_time(session.started_at, scope, seconds=True)} "
        f"and {end}: {_plural(session.frames_processed, 'frame')} processed at "
        f"{session.measured_fps:.1f} fps, {_events_word(total, only_labels[0] if len(only_labels) == 1 else None)} ({summary}).",
    ]
    filters = EventFilter(session_id=session.pk, labels=only_labels)
    links = _event_links(scope, filters)
    if links:
        lines.append(links)
    session_links = ", ".join(
        f"[the session's {what}]({_page_url(EventFilter(session_id=session.pk, labels=labels), scope)})"
        for what, labels in (
            [(f"{markdown_literal(label)} events", (label,)) for label in only_labels]
            or [("events", ())]
        )
    )
    lines.append(
        f"Counts are events started during the session. See {session_links} on the events page."
    )
    return "\n\n".join(lines)


def capabilities_markdown() -> str:
    return "\n".join(
        [
            "About what the cameras saw, I can tell you:",
            "",
            *(f"- {c}" for c in CAPABILITIES),
            "",
            f"Understood {PERIOD_WORDS}.",
        ]
    )


_ANSWERS = {
    Intent.COUNT: _answer_count,
    Intent.SUMMARY: _answer_summary,
    Intent.BUSIEST_CAMERA: _answer_busiest_camera,
    Intent.BUSIEST_HOUR: _answer_busiest_hour,
    Intent.LAST_SEEN: _answer_last_seen,
    Intent.COMPARE: _answer_compare,
    Intent.SESSION: _answer_session,
}


def scope_for(organization: Organization, *, now: datetime | None = None) -> Scope:
    return Scope(
        organization=organization,
        cameras=list(Camera.objects.filter(organization=organization).order_by("name", "id")),
        now=now or timezone.now(),
        tz=organization.tzinfo,
    )


def question_parse_for(text: str, scope: Scope) -> Question:
    return parse_question(
        text,
        now=scope.now,
        tz=scope.tz,
        camera_names=[camera.name for camera in scope.cameras],
        known_labels=scope.known_labels,
        zone_names=scope.zone_names,
    )


def answer_question(
    *,
    organization: Organization,
    text: str,
    now: datetime | None = None,
    scope: Scope | None = None,
) -> str | None:
    """A Markdown answer, or None when the question is not about what the cameras saw (the
    chat assistant then answers it, listing `capabilities_markdown` among what it can do).
    Give the `scope` when another answer already read it."""
    scope = scope or scope_for(organization, now=now)
    question = question_parse_for(text, scope)
    if question.intent in (Intent.UNKNOWN, Intent.HELP):
        return None
    words = set(re.findall(r"[a-z]+", text.lower()))
    if words & NOT_ABOUT_EVENTS and not question.cameras and not words & ABOUT_EVENTS:
        return None
    return _no_cameras(scope) or _ANSWERS[question.intent](question, scope)
