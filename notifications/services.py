"""Writes of the notifications app: alerts and their webhook outbox rows."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.dispatch import Signal

from cameras.models import Camera
from notifications.models import Alert, AlertRule, Webhook, WebhookDelivery
from notifications.payloads import alert_body, event_body, snapshot_base64

if TYPE_CHECKING:
    from notifications.matching import Match

# Sent once the alerts' transaction has committed, from the recorder's flusher thread (never the
# event loop), with `alerts`: a list of `RaisedAlert`. Receivers (the browser push, MQTT, the
# delivery worker's wake-up) must be quick and contain their own failures.
alerts_raised = Signal()


class RaisedAlert:
    """An alert as its listeners see it: which rule or webhook, and the payload told."""

    __slots__ = (
        "pk",
        "organization_pk",
        "rule_pk",
        "webhook_pk",
        "notify_browser",
        "notify_mqtt",
        "body",
    )

    def __init__(self, *, alert: Alert, rule: AlertRule | Webhook, body: dict[str, Any]):
        self.pk = alert.pk
        self.organization_pk = alert.organization_id
        self.rule_pk = alert.rule_id
        self.webhook_pk = alert.webhook_id
        self.notify_browser = isinstance(rule, AlertRule) and rule.notify_browser
        self.notify_mqtt = isinstance(rule, AlertRule) and rule.notify_mqtt
        self.body = body


def alerts_create(*, camera_pk: int, matches: list[Match], now: datetime) -> list[Alert]:
    """Store one alert per match, and an outbox row for each webhook's (call in a transaction);
    tell `alerts_raised` once committed."""
    camera = Camera.objects.select_related("organization").get(pk=camera_pk)
    organization = camera.organization
    alerts = Alert.objects.bulk_create(
        [
            Alert(
                organization_id=organization.pk,
                event_id=match.event.pk,
                rule=match.rule if isinstance(match.rule, AlertRule) else None,
                webhook=match.rule if isinstance(match.rule, Webhook) else None,
                camera_id=camera_pk,
                label=match.event.label,
                created_at=now,
            )
            for match in matches
        ]
    )
    raised, deliveries = [], []
    for alert, match in zip(alerts, matches, strict=True):
        event = match.event
        rule = match.rule
        body = alert_body(
            alert_pk=alert.pk,
            created_at=now,
            source_kind="rule" if isinstance(rule, AlertRule) else "webhook",
            source_pk=rule.pk,
            source_name=rule.name,
            organization_slug=organization.slug,
            event=event_body(
                event_pk=event.pk,
                camera_public_id=camera.public_id,
                camera_name=camera.name,
                label=event.label,
                track_id=event.track_id,
                zones=list(event.zones),
                started_at=event.started_at,
                last_seen_at=event.last_seen_at,
                ended_at=event.ended_at,
                peak_confidence=event.peak_confidence,
            ),
        )
        if isinstance(rule, Webhook):
            payload = dict(body)
            if rule.include_snapshot:
                payload["snapshot"] = {
                    "content_type": "image/jpeg",
                    "base64": snapshot_base64(event.snapshot),
                }
            deliveries.append(
                WebhookDelivery(
                    webhook=rule,
                    alert=alert,
                    kind=WebhookDelivery.Kind.ALERT,
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
        raised.append(RaisedAlert(alert=alert, rule=rule, body=body))
    if deliveries:
        WebhookDelivery.objects.bulk_create(deliveries)
    transaction.on_commit(lambda: alerts_raised.send(sender=Alert, alerts=raised))
    return alerts
