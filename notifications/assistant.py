"""What the chat assistant knows about alerts: the builtin backend's answers, the openai
backend's `alerts` tool and a summary line, all from `notifications.selectors`.

The counts are `alert_counts(alerts_in_window(...))` over the organization's alerts, the
functions the alerts page and API use, so "3 alerts today" is what `/alerts/?since=…&until=…`
lists; every answer links that page with the window it counted. Periods and camera names are
read as the events answers read them (`events.questions`), in the organization's time zone.

The chats app takes one data source per chat: `AlertsAssistantData` extends the events' one
(questions about alerts here, every other question and tool there), and
`NotificationsConfig.ready()` registers it after the events app has registered its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import partial
from typing import Any
from urllib.parse import urlencode

from channels.db import database_sync_to_async
from django.utils import timezone

from chats.assistants import FactGroup
from chats.markdown_rendering import markdown_literal
from events.answers import Scope, answer_question, format_span, format_time, scope_for
from events.assistant import EventsAssistantData, ToolArgumentError
from events.questions import (
    CAPABILITIES,
    Period,
    parse_cameras,
    parse_labels,
    parse_period,
)
from notifications.models import Alert
from notifications.selectors import (
    AlertCounts,
    alert_counts,
    alerts_for_organization,
    alerts_in_window,
    alerts_matching,
    rules_for_organization,
    webhooks_for_organization,
)
from organizations.models import Organization

LISTED_ALERTS = 5
TOOL_LISTED_ALERTS = 10
PERIOD_TEXT_MAX = 200
ALERT_CAPABILITIES = (
    "which alerts the alert rules and webhooks raised in a period, per rule, on a camera "
    '("what alerts did I get today?", "alerts from the Front door yesterday")',
    'how the webhook deliveries went ("did any webhook fail today?")',
    'which rules fired ("which rules fired this week?")',
)
ALERTS_DEFINITION = "An alert is one rule's or webhook's match with one event, counted when raised"
MAKE_ONE = "An admin makes them under [Notifications](/notifications/)."

# Words that make a question one about alerts. Without them a question stays the events
# answers' ("how many people today?"), and none of them is ever read as an object class.
ALERT_WORDS = frozenset(
    "alert alerts alerted alerting notification notifications notified webhook webhooks".split()
)
_RULES_FIRED = re.compile(
    r"\brules?\b.*\b(fire[ds]?|firing|trigger(ed|s)?|match(ed|es)?)\b"
    r"|\b(fire[ds]?|trigger(ed|s)?)\b.*\brules?\b"
)
_ABOUT_WEBHOOKS = re.compile(
    r"\b(webhooks?|deliver(y|ies|ed)?|fail(ed|s|ing|ures?)?|retr(y|ying|ied|ies)|given up|gave up)\b"
)
_HELP = re.compile(r"\b(help|what can you|what do you know|what questions)\b")


@dataclass(frozen=True)
class AlertQuestion:
    text: str
    period: Period
    cameras: tuple[str, ...]
    labels: tuple[str, ...]
    # "did any webhook fail?": the deliveries lead the answer.
    about_webhooks: bool


def parse_alert_question(
    text: str,
    *,
    now: datetime,
    tz: tzinfo,
    camera_names: list[str] | tuple[str, ...] = (),
    known_labels: list[str] | tuple[str, ...] = (),
) -> AlertQuestion | None:
    """The alert question `text` asks, or None when it is not about alerts (plain Python)."""
    lowered = " ".join(re.findall(r"[a-z0-9]+", text.lower()))
    if not (set(lowered.split()) & ALERT_WORDS or _RULES_FIRED.search(lowered)):
        return None
    if _HELP.search(lowered):
        return None  # the list of what the assistant answers covers alerts
    singular = {word.removesuffix("s") for word in ALERT_WORDS}
    labels = tuple(
        label
        for label in parse_labels(text, known_labels=known_labels)
        if label not in ALERT_WORDS | singular
    )
    return AlertQuestion(
        text=text,
        period=parse_period(text, now=now, tz=tz),
        cameras=parse_cameras(text, camera_names=camera_names),
        labels=labels,
        about_webhooks=bool(_ABOUT_WEBHOOKS.search(lowered)),
    )


@dataclass(frozen=True)
class AlertReport:
    """An organization's alerts in one window, on some cameras, of some classes."""

    since: datetime
    until: datetime
    camera_public_ids: tuple[str, ...]
    labels: tuple[str, ...]
    counts: AlertCounts
    latest: list[Alert]
    page_urls: list[str]  # one per camera named (the page filters by one), else one


def _utc_param(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alerts_page_url(*, since: datetime, until: datetime, camera_public_id: str | None) -> str:
    """The alerts page listing exactly the alerts raised in `[since, until)` (on one camera)."""
    params = {"since": _utc_param(since), "until": _utc_param(until)}
    if camera_public_id:
        params["camera"] = camera_public_id
    return f"/alerts/?{urlencode(params)}"


def alert_report(
    *,
    organization: Organization,
    since: datetime,
    until: datetime,
    camera_public_ids: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
    listed: int = LISTED_ALERTS,
) -> AlertReport:
    alerts = alerts_matching(
        alerts_in_window(
            alerts_for_organization(organization=organization), since=since, until=until
        ),
        camera_public_ids=camera_public_ids,
        labels=labels,
    )
    latest = list(
        alerts.select_related("camera", "rule", "webhook").order_by("-created_at", "-id")[:listed]
    )
    return AlertReport(
        since=since,
        until=until,
        camera_public_ids=camera_public_ids,
        labels=labels,
        counts=alert_counts(alerts),
        latest=latest,
        page_urls=[
            alerts_page_url(since=since, until=until, camera_public_id=public_id)
            for public_id in camera_public_ids or (None,)
        ],
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _names(items) -> str:
    return ", ".join(
        f"**{markdown_literal(item.name)}**{'' if item.enabled else ' (off)'}" for item in items
    )


def _deliveries_sentence(counts: AlertCounts) -> str:
    return (
        f"**{counts.webhooks_delivered} delivered**, **{counts.webhooks_pending} still retrying**, "
        f"**{counts.webhooks_failed} given up**"
    )


def _busiest_first(counts: AlertCounts) -> list[tuple[str, int]]:
    # By count, then name: the same order on every database (NULL names sort apart).
    return sorted(counts.by_rule.items(), key=lambda item: (-item[1], item[0]))


def _alert_link(alert: Alert, scope: Scope) -> str:
    return (
        f"[{markdown_literal(alert.label)} on {markdown_literal(alert.camera.name)} at "
        f"{format_time(alert.created_at, scope, seconds=True)}](/events/{alert.event_id}) "
        f"({markdown_literal(alert.source.name)})"
    )


def answer_alert_question(
    *,
    organization: Organization,
    text: str,
    now: datetime | None = None,
    scope: Scope | None = None,
) -> str | None:
    """A Markdown answer about the organization's alerts, or None when `text` is not about
    alerts. Sync and database-bound: call it off the event loop."""
    scope = scope or scope_for(organization, now=now)
    question = parse_alert_question(
        text,
        now=scope.now,
        tz=scope.tz,
        camera_names=[camera.name for camera in scope.cameras],
        known_labels=scope.known_labels,
    )
    if question is None:
        return None
    name = markdown_literal(organization.name)
    rules = list(rules_for_organization(organization=organization))
    webhooks = list(webhooks_for_organization(organization=organization))
    if not rules and not webhooks:
        return (
            f"{name} has no alert rules or webhooks yet, so no alerts are raised. {MAKE_ONE} "
            "A rule picks cameras, classes and zones and shows its alerts in the browser or on "
            "MQTT; a webhook POSTs them to a URL."
        )
    period = question.period
    if period.last_session:
        return (
            "I count alerts in time windows, not camera sessions: ask e.g. "
            "“what alerts did I get today?” or “alerts in the last hour”."
        )
    assert period.start is not None and period.end is not None
    wanted = {camera_name.lower() for camera_name in question.cameras}
    report = alert_report(
        organization=organization,
        since=period.start,
        until=period.end,
        camera_public_ids=tuple(
            camera.public_id for camera in scope.cameras if camera.name.lower() in wanted
        ),
        labels=question.labels,
    )
    counts = report.counts
    window = f"{period.description} ({format_span(period.start, period.end, scope)})"
    where = (
        "on " + " and ".join(f"**{markdown_literal(camera)}**" for camera in question.cameras)
        if question.cameras
        else "across all cameras"
    )
    what = " or ".join(markdown_literal(label) for label in question.labels)
    alerts_word = f"{what} alert" if what else "alert"

    deliveries = None
    if question.about_webhooks and not webhooks:
        deliveries = f"{name} has no webhooks, so nothing was sent. {MAKE_ONE}"
    elif webhooks:
        deliveries = f"Webhook deliveries of these alerts: {_deliveries_sentence(counts)}."
    if counts.total:
        per_rule = ", ".join(
            f"{markdown_literal(rule)} {count}" for rule, count in _busiest_first(counts)
        )
        lead = f"**{_plural(counts.total, alerts_word)}** {where} {window}: {per_rule}."
    else:
        lead = (
            f"No {alerts_word}s {where} {window}. Alert rules: {_names(rules) or 'none'}; "
            f"webhooks: {_names(webhooks) or 'none'}."
        )
    lines = [deliveries, lead] if question.about_webhooks else [lead, deliveries]
    if report.latest:
        lines.append(
            "Latest: " + ", ".join(_alert_link(alert, scope) for alert in report.latest) + "."
        )
    if question.cameras:
        links = ", ".join(
            f"[the alerts on {markdown_literal(camera.name)}]({url})"
            for camera, url in zip(
                [c for c in scope.cameras if c.public_id in report.camera_public_ids],
                report.page_urls,
                strict=True,
            )
        )
    else:
        links = f"[these alerts]({report.page_urls[0]})"
    every_class = " (it lists every class)" if question.labels else ""
    lines.append(
        f"{ALERTS_DEFINITION}; times in {scope.tz}. See {links} on the alerts page{every_class}."
    )
    return "\n\n".join(line for line in lines if line)


def alert_facts(organization: Organization) -> list[FactGroup]:
    """The alerts' lines for the openai backend's system prompt, read only when needed."""
    return [
        FactGroup(
            topic="alerts",
            keywords=(),
            read_lines=partial(database_sync_to_async(_alert_lines), organization),
        )
    ]


def _alert_lines(organization: Organization) -> tuple[str, ...]:
    rules = list(rules_for_organization(organization=organization))
    webhooks = list(webhooks_for_organization(organization=organization))
    if not rules and not webhooks:
        return (
            "The organization has no alert rules or webhooks; an admin makes them under "
            "/notifications/.",
        )
    scope = scope_for(organization)
    today = parse_period("today", now=scope.now, tz=scope.tz)
    assert today.start is not None and today.end is not None
    report = alert_report(organization=organization, since=today.start, until=today.end, listed=0)
    counts = report.counts
    per_rule = ", ".join(f"{rule} {count}" for rule, count in _busiest_first(counts))

    def names(items) -> str:
        return ", ".join(f"{item.name!r}{'' if item.enabled else ' (off)'}" for item in items)

    return (
        f"Alert rules: {names(rules) or 'none'}; webhooks: {names(webhooks) or 'none'}.",
        f"Alerts today (since {format_time(today.start, scope)}): {counts.total}"
        + (f" ({per_rule})" if per_rule else "")
        + f"; webhook deliveries {counts.webhooks_delivered} delivered, "
        f"{counts.webhooks_pending} still retrying, {counts.webhooks_failed} given up. "
        f"{ALERTS_DEFINITION}. The alerts tool counts other periods and cameras; link "
        f"{report.page_urls[0]} to list today's.",
    )


ALERTS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "alerts",
        "description": (
            f"Alerts raised by the organization's alert rules and webhooks ({ALERTS_DEFINITION.lower()}) "
            "in a period: the count, per rule or webhook, the webhook deliveries (delivered, "
            "still retrying, given up), the latest alerts with their event links, and the "
            "alerts page link that lists them."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "period": {
                    "type": "string",
                    "description": 'e.g. "today", "yesterday", "this week", "last 2 hours", '
                    '"since 9:00"; default the last 24 hours.',
                },
                "camera": {"type": "string", "description": "Camera name or id; omit for all."},
                "class": {"type": "string", "description": "Object class, e.g. person."},
            },
        },
    },
}


class AlertsAssistantData(EventsAssistantData):
    """The events' data source, plus the organization's alerts."""

    capabilities = CAPABILITIES + ALERT_CAPABILITIES

    async def answer(self, question: str) -> str | None:
        return await database_sync_to_async(self._answer)(question)

    def _answer(self, question: str) -> str | None:
        # One thread hop and one read of the cameras and classes for both kinds of answer.
        scope = scope_for(self.organization)
        answer = answer_alert_question(organization=self.organization, text=question, scope=scope)
        if answer is not None:
            return answer
        return answer_question(organization=self.organization, text=question, scope=scope)

    def tool_schemas(self) -> list[dict[str, Any]]:
        return [*super().tool_schemas(), ALERTS_TOOL]

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        if name != ALERTS_TOOL["function"]["name"]:
            return await super().call(name, arguments)
        if not isinstance(arguments, dict):
            return json.dumps({"error": "arguments must be a JSON object"})
        try:
            result = await database_sync_to_async(self._alerts)(arguments)
        except ToolArgumentError as exc:
            result = {"error": str(exc)}
        return json.dumps(result, default=str)

    def _alerts(self, arguments: dict[str, Any]) -> dict[str, Any]:
        now = timezone.now()
        tz = self.organization.tzinfo
        period = parse_period(str(arguments.get("period") or "")[:PERIOD_TEXT_MAX], now=now, tz=tz)
        if arguments.get("period") and (not period.explicit or period.last_session):
            raise ToolArgumentError(
                f"period {arguments['period']!r} not understood; use e.g. today, yesterday, "
                "this week, last 2 hours, since 9:00"
            )
        # The camera is found (or refused) as the events tools find it.
        filters, _, _ = self._window({"camera": arguments.get("camera"), "until": now.isoformat()})
        label = arguments.get("class")
        assert period.start is not None and period.end is not None
        report = alert_report(
            organization=self.organization,
            since=period.start,
            until=period.end,
            camera_public_ids=filters.camera_public_ids,
            labels=(str(label),) if label else (),
            listed=TOOL_LISTED_ALERTS,
        )
        counts = report.counts
        return {
            "period": period.description,
            "since": period.start.astimezone(tz).isoformat(),
            "until": period.end.astimezone(tz).isoformat(),
            "count": counts.total,
            "by_rule": counts.by_rule,
            "webhook_deliveries": {
                "delivered": counts.webhooks_delivered,
                "still_retrying": counts.webhooks_pending,
                "given_up": counts.webhooks_failed,
            },
            "latest": [
                {
                    "class": alert.label,
                    "camera": alert.camera.name,
                    "rule": alert.source.name,
                    "raised_at": alert.created_at.astimezone(tz).isoformat(),
                    "event_url": f"/events/{alert.event_id}",
                }
                for alert in report.latest
            ],
            "alerts_page": report.page_urls,
        }
