"""The alert lists of the API, the alerts page and the bell: one filter, one shape.

An alert is listed as the bell hears it live (`notifications.browser.browser_alert`): the alert
body of `notifications.payloads`, with `snapshot_url` and `url`, and for a webhook's alert its
delivery (`status`, `attempts`, `response_status`, `last_error`, `delivered_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet

from events.models import EventZone
from notifications.browser import browser_alert
from notifications.models import Alert, WebhookDelivery
from notifications.payloads import alert_body, event_body, iso_time
from notifications.selectors import alerts_in_window, alerts_matching, browser_alerts


@dataclass(frozen=True)
class AlertListFilter:
    since: datetime | None = None
    until: datetime | None = None
    organization_pk: int | None = None
    camera_public_id: str | None = None
    rule_pk: int | None = None
    webhook_pk: int | None = None
    browser: bool = False  # only the bell's: alerts of rules that notify the browser


def alerts_filtered(alerts: QuerySet[Alert], filters: AlertListFilter) -> QuerySet[Alert]:
    """`alerts` (already scoped to the user) narrowed by `filters`, newest first, with what
    `alert_item` reads fetched in a few queries."""
    alerts = alerts_in_window(alerts, since=filters.since, until=filters.until)
    if filters.browser:
        alerts = browser_alerts(alerts)
    if filters.organization_pk is not None:
        alerts = alerts.filter(organization_id=filters.organization_pk)
    if filters.camera_public_id is not None:
        alerts = alerts_matching(alerts, camera_public_ids=(filters.camera_public_id,))
    if filters.rule_pk is not None:
        alerts = alerts.filter(rule_id=filters.rule_pk)
    if filters.webhook_pk is not None:
        alerts = alerts.filter(webhook_id=filters.webhook_pk)
    return (
        alerts.select_related("organization", "camera", "rule", "webhook", "event", "delivery")
        .prefetch_related(
            Prefetch(
                "event__zones", queryset=EventZone.objects.order_by("zone"), to_attr="zone_rows"
            )
        )
        .order_by("-created_at", "-id")
    )


def _delivery(alert: Alert) -> dict[str, Any] | None:
    try:
        delivery: WebhookDelivery = alert.delivery
    except WebhookDelivery.DoesNotExist:
        return None
    return {
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_status": delivery.response_status,
        "last_error": delivery.last_error,
        "delivered_at": iso_time(delivery.delivered_at),
    }


def alert_item(alert: Alert) -> dict[str, Any]:
    """One alert as the API and the bell show it (from `alerts_filtered`)."""
    event = alert.event
    source = alert.source
    item = browser_alert(
        alert_body(
            alert_pk=alert.pk,
            created_at=alert.created_at,
            source_kind="rule" if alert.rule_id is not None else "webhook",
            source_pk=source.pk,
            source_name=source.name,
            organization_slug=alert.organization.slug,
            event=event_body(
                event_pk=event.pk,
                camera_public_id=alert.camera.public_id,
                camera_name=alert.camera.name,
                label=event.label,
                track_id=event.track_id,
                zones=[row.zone for row in event.zone_rows],
                started_at=event.started_at,
                last_seen_at=event.last_seen_at,
                ended_at=event.ended_at,
                peak_confidence=event.peak_confidence,
            ),
        )
    )
    if alert.webhook_id is not None:
        item["delivery"] = _delivery(alert)
    return item
