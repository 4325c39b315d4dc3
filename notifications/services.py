"""Writes of the notifications app: alerts and their webhook outbox rows."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from cameras.models import Camera
from notifications.models import Alert, AlertRule, Webhook, WebhookDelivery, new_webhook_secret
from notifications.payloads import alert_body, event_body, snapshot_base64
from organizations.models import Organization
from project.counters import cache_counter_incr

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


# --- managing rules and webhooks: the API, the pages and the admin write through these --------

AlertSource = AlertRule | Webhook


def alert_filter_create(
    *, model: type[AlertSource], organization: Organization, cameras: list[Camera], **fields: Any
) -> AlertSource:
    """A new rule or webhook of `organization`; `cameras` must be its own (the callers check)."""
    with transaction.atomic():
        rule = model.objects.create(organization=organization, **fields)
        rule.cameras.set(cameras)
    return rule


def alert_filter_update(
    *, rule: AlertSource, cameras: list[Camera] | None = None, **fields: Any
) -> AlertSource:
    """Change the given fields (and the cameras, when given) of a rule or webhook."""
    for name, value in fields.items():
        setattr(rule, name, value)
    with transaction.atomic():
        rule.save()
        if cameras is not None:
            rule.cameras.set(cameras)
    return rule


def alert_filter_delete(*, rule: AlertSource) -> None:
    """Delete a rule or webhook with its alerts (and a webhook's delivery log)."""
    rule.delete()


def webhook_secret_rotate(*, webhook: Webhook) -> Webhook:
    """A new secret: receivers must switch to it, deliveries signed from now on use it."""
    webhook.secret = new_webhook_secret()
    webhook.save(update_fields=["secret", "updated_at"])
    return webhook


class WebhookTestRateLimited(Exception):
    def __init__(self, wait_seconds: int) -> None:
        super().__init__(f"Too many test sends: try again in {wait_seconds} s.")
        self.wait_seconds = wait_seconds


def webhook_test_rate_limit_hit(*, user: AbstractBaseUser) -> int:
    """Count one test send; 0 when allowed, else the seconds until the user's minute resets
    (the camera source test's pattern: a fixed minute window in the cache)."""
    now = time.time()
    window = int(now // 60)
    count = cache_counter_incr(f"webhook-test:{user.pk}:{window}", timeout=70)
    if count > settings.WEBHOOK_TESTS_PER_MINUTE:
        return max(1, int((window + 1) * 60 - now + 0.999))
    return 0


def webhook_test_payload(*, webhook: Webhook, now: datetime) -> dict[str, Any]:
    """A body shaped like a real alert's (`alert_body`) with `"type": "test"`, made of the
    webhook's own filters, so a receiver can try its parsing; ids are 0: no such alert exists."""
    camera = webhook.cameras.order_by("name", "id").first() or (
        Camera.objects.filter(organization=webhook.organization_id).order_by("name", "id").first()
    )
    body = alert_body(
        alert_pk=0,
        created_at=now,
        source_kind="webhook",
        source_pk=webhook.pk,
        source_name=webhook.name,
        organization_slug=webhook.organization.slug,
        event=event_body(
            event_pk=0,
            camera_public_id=camera.public_id if camera else "",
            camera_name=camera.name if camera else "Sample camera",
            label=webhook.classes[0] if webhook.classes else "person",
            track_id=1,
            zones=list(webhook.zones[:1]),
            started_at=now - timedelta(seconds=5),
            last_seen_at=now,
            ended_at=None,
            peak_confidence=max(webhook.min_confidence, 0.9),
        ),
    )
    body["type"] = "test"
    if webhook.include_snapshot:
        body["snapshot"] = {"content_type": "image/jpeg", "base64": None}
    return body


def webhook_test_send(webhook: Webhook, user: AbstractBaseUser) -> WebhookDelivery:
    """Queue a test POST to the webhook (the delivery worker sends it as any other, signed and
    retried, and it shows in the delivery log); WebhookTestRateLimited past the user's quota."""
    wait = webhook_test_rate_limit_hit(user=user)
    if wait:
        raise WebhookTestRateLimited(wait)
    now = timezone.now()
    return WebhookDelivery.objects.create(
        webhook=webhook,
        alert=None,
        kind=WebhookDelivery.Kind.TEST,
        payload=webhook_test_payload(webhook=webhook, now=now),
        created_at=now,
        next_attempt_at=now,
    )


def webhook_deliveries_retry(*, deliveries: QuerySet[WebhookDelivery]) -> int:
    """Send these again as soon as a worker looks (the admin's "retry now"); how many."""
    return deliveries.update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now(), claimed_until=None
    )
