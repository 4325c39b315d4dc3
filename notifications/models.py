"""Who hears about events: alert rules, webhooks, the alerts they raised and the webhook outbox.

An *alert* is one match of one rule (or webhook) with one event, raised at most once per event
(the first flush at which the event meets the rule) and at most once per cool-down per camera
and class. Alerts are written by the recorder's flush, in the same transaction as the event rows
(`notifications.matching`), so no event can be stored without its alerts or the other way round.

A webhook's alerts also get a `WebhookDelivery`: the outbox row a delivery worker sends, retries
and logs (`notifications.delivery`).
"""

from __future__ import annotations

import secrets
import uuid
import zoneinfo
from datetime import datetime, time

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from cameras.models import Camera
from organizations.models import Organization

MAX_CLASSES = 32
MAX_ZONES = 16


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# The fields of `AlertFilter` that people set, in the order forms and the API show them.
ALERT_FILTER_FIELDS = [
    "name",
    "enabled",
    "cameras",
    "classes",
    "zones",
    "min_confidence",
    "min_duration_seconds",
    "quiet_hours_start",
    "quiet_hours_end",
    "cooldown_seconds",
]


class AlertFilter(models.Model):
    """Which events raise an alert: the fields rules and webhooks share.

    Empty `cameras`, `classes` or `zones` mean "any". Quiet hours are read in the organization's
    time zone; an event that starts in them raises nothing until they end (if it is still going
    on and still matches then)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="%(class)ss"
    )
    name = models.CharField(max_length=80)
    enabled = models.BooleanField(default=True)
    cameras = models.ManyToManyField(
        Camera, blank=True, related_name="+", help_text="Empty: every camera."
    )
    classes = models.JSONField(
        default=list, blank=True, help_text='Object classes, e.g. ["person"]; empty: every class.'
    )
    zones = models.JSONField(
        default=list,
        blank=True,
        help_text="Zone names; the object must enter one of them. Empty: anywhere.",
    )
    min_confidence = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    min_duration_seconds = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(86400.0)],
        help_text="The object must have been in view this long.",
    )
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    cooldown_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MaxValueValidator(86400)],
        help_text="After an alert, the same camera and class raise no other for this long.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def is_quiet_at(self, moment: datetime, tzinfo: zoneinfo.ZoneInfo) -> bool:
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if start is None or end is None or start == end:
            return False
        local: time = moment.astimezone(tzinfo).time()
        if start < end:
            return start <= local < end
        return local >= start or local < end  # across midnight, e.g. 22:00–06:00


class AlertRule(AlertFilter):
    """Alerts shown in the browser (the bell, browser notifications) and published on MQTT."""

    notify_browser = models.BooleanField(default=True)
    notify_mqtt = models.BooleanField(default=False)


class Webhook(AlertFilter):
    """Alerts sent as signed JSON POSTs to a URL (README, "Webhooks")."""

    # Not a URLField: its check refuses host names without a dot (http://homeassistant:8123/).
    # Every form and the API check it with notifications.serializers.webhook_url_validate.
    url = models.CharField(max_length=500, help_text="An http:// or https:// URL.")
    secret = models.CharField(max_length=128, default=new_webhook_secret)
    include_snapshot = models.BooleanField(
        default=True, help_text="Carry the event's snapshot JPEG in the body, base64-encoded."
    )


class Alert(models.Model):
    """One rule's (or webhook's) match with one event."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts")
    event = models.ForeignKey(
        "events.DetectionEvent", on_delete=models.CASCADE, related_name="alerts"
    )
    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    webhook = models.ForeignKey(
        Webhook, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    # Copied from the event so that the cool-down is one indexed query.
    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "event"], name="one_alert_per_rule_and_event"),
            models.UniqueConstraint(
                fields=["webhook", "event"], name="one_alert_per_webhook_and_event"
            ),
            models.CheckConstraint(
                condition=models.Q(rule__isnull=False, webhook__isnull=True)
                | models.Q(rule__isnull=True, webhook__isnull=False),
                name="alert_has_rule_or_webhook",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["rule", "camera", "label", "-created_at"]),
            models.Index(fields=["webhook", "camera", "label", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.label} on {self.camera_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @property
    def source(self) -> AlertRule | Webhook:
        return self.rule if self.rule_id is not None else self.webhook


class WebhookDelivery(models.Model):
    """The outbox row of one webhook POST, and its log: attempts, last status, last error."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Given up"

    class Kind(models.TextChoices):
        ALERT = "alert", "Alert"
        TEST = "test", "Test"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.OneToOneField(
        Alert, on_delete=models.CASCADE, null=True, blank=True, related_name="delivery"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.ALERT)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # A worker's claim: no other worker sends the row before this time (see notifications.delivery).
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="pending_deliveries_due",
            ),
            models.Index(fields=["webhook", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.webhook} ({self.status})"
