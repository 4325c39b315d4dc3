"""What the API takes and shows for rules, webhooks and webhook deliveries, and the checks the
pages' forms share (`webhook_url_validate`, `classes_clean`, `zones_clean`,
`quiet_hours_check`, `organization_cameras_get`), so the two cannot disagree.

Who sees what (README, "Notifications"): every member of the organization (viewers included)
may read its rules and webhooks, as they may read its events; only admins and owners
(`Action.EDIT_ORGANIZATION`: rules and webhooks are the organization's settings) may change
them, see a webhook's secret and its URL unmasked (a receiver's URL often carries a token).
"""

from __future__ import annotations

from datetime import time
from typing import Any

from django.core.exceptions import ValidationError
from rest_framework import serializers

from cameras.models import Camera
from cameras.source_policy import source_masked
from notifications.delivery import webhook_url_check
from notifications.models import (
    ALERT_FILTER_FIELDS,
    MAX_CLASSES,
    MAX_ZONES,
    AlertRule,
    Webhook,
    WebhookDelivery,
)
from organizations.models import Organization
from organizations.permissions import Action, role_allows

URL_MAX = 500
CLASS_MAX = 64  # Alert.label's length
ZONE_MAX = 40  # cameras.zones.NAME_MAX
CAMERAS_MAX = 500
SECRET_MIN, SECRET_MAX = 16, 128
TIME_FORMATS = ["%H:%M", "%H:%M:%S"]


def webhook_url_validate(url: str) -> str:
    """The URL if a webhook may be sent there, else ValidationError saying why: at most
    URL_MAX characters and the delivery's own configuration-time check
    (`notifications.delivery.webhook_url_check`: http or https, a host, and a numeric host only
    if it is public or inside WEBHOOK_ALLOWED_NETWORKS; names are checked at each send)."""
    if len(url) > URL_MAX:
        raise ValidationError(f"At most {URL_MAX} characters.")
    webhook_url_check(url)
    return url


def classes_clean(classes: list[str]) -> list[str]:
    """Distinct, trimmed, in the order given; at most MAX_CLASSES of at most 64 characters."""
    cleaned = list(dict.fromkeys(name.strip() for name in classes if name.strip()))
    if len(cleaned) > MAX_CLASSES:
        raise ValidationError(f"At most {MAX_CLASSES} classes.")
    too_long = [name for name in cleaned if len(name) > CLASS_MAX]
    if too_long:
        raise ValidationError(f"A class name is at most {CLASS_MAX} characters.")
    return cleaned


def zones_clean(zones: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(name.strip() for name in zones if name.strip()))
    if len(cleaned) > MAX_ZONES:
        raise ValidationError(f"At most {MAX_ZONES} zones.")
    if any(len(name) > ZONE_MAX for name in cleaned):
        raise ValidationError(f"A zone name is at most {ZONE_MAX} characters.")
    return cleaned


def quiet_hours_check(start: time | None, end: time | None) -> None:
    if (start is None) != (end is None):
        raise ValidationError(
            {
                "quiet_hours_start" if start is None else "quiet_hours_end": [
                    "Give both ends of the quiet hours, or neither."
                ]
            }
        )


def organization_cameras_get(*, organization: Organization, public_ids: list[str]) -> list[Camera]:
    """The organization's cameras with these ids; ValidationError naming the first that is not
    one of them (another organization's camera gets the same answer as one that does not exist)."""
    wanted = list(dict.fromkeys(public_ids))
    found = {
        camera.public_id: camera
        for camera in Camera.objects.filter(organization=organization, public_id__in=wanted)
    }
    for public_id in wanted:
        if public_id not in found:
            raise ValidationError(f"{public_id!r} is not one of this organization's cameras.")
    return [found[public_id] for public_id in wanted]


def may_see_secrets(role: str | None) -> bool:
    return role_allows(role, Action.EDIT_ORGANIZATION)


# --- output ------------------------------------------------------------------------------------


class AlertFilterOutputSerializer(serializers.ModelSerializer):
    organization = serializers.IntegerField(source="organization_id")
    cameras = serializers.SerializerMethodField(help_text="Camera ids; empty: every camera.")
    classes = serializers.ListField(child=serializers.CharField())
    zones = serializers.ListField(child=serializers.CharField())
    quiet_hours_start = serializers.TimeField(format="%H:%M", allow_null=True)
    quiet_hours_end = serializers.TimeField(format="%H:%M", allow_null=True)

    def get_cameras(self, rule) -> list[str]:
        # Prefetched by the selectors: sorted here, not in a query per rule.
        return sorted(camera.public_id for camera in rule.cameras.all())


class AlertRuleOutputSerializer(AlertFilterOutputSerializer):
    class Meta:
        model = AlertRule
        fields = [
            "id",
            "organization",
            *ALERT_FILTER_FIELDS,
            "notify_browser",
            "notify_mqtt",
            "created_at",
            "updated_at",
        ]


class WebhookOutputSerializer(AlertFilterOutputSerializer):
    """`context["roles"]` (organization id → the reader's role) decides whether `secret` and
    the whole `url` are shown (admins, owners) or `secret` is null and the URL masked."""

    url = serializers.SerializerMethodField()
    secret = serializers.SerializerMethodField(
        help_text="Signs every delivery; null unless you are an admin or owner."
    )

    class Meta:
        model = Webhook
        fields = [
            "id",
            "organization",
            "url",
            "secret",
            *ALERT_FILTER_FIELDS,
            "include_snapshot",
            "created_at",
            "updated_at",
        ]

    def _shows_secrets(self, webhook: Webhook) -> bool:
        return may_see_secrets((self.context.get("roles") or {}).get(webhook.organization_id))

    def get_url(self, webhook: Webhook) -> str:
        return webhook.url if self._shows_secrets(webhook) else source_masked(webhook.url)

    def get_secret(self, webhook: Webhook) -> str | None:
        return webhook.secret if self._shows_secrets(webhook) else None


class WebhookDeliveryOutputSerializer(serializers.ModelSerializer):
    alert = serializers.IntegerField(source="alert_id", allow_null=True)
    event = serializers.SerializerMethodField(help_text="The alert's event id; null for tests.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "kind",
            "status",
            "attempts",
            "created_at",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
            "response_status",
            "last_error",
            "alert",
            "event",
        ]

    def get_event(self, delivery: WebhookDelivery) -> int | None:
        return delivery.alert.event_id if delivery.alert_id is not None else None


# --- input -------------------------------------------------------------------------------------


class AlertFilterInputSerializer(serializers.Serializer):
    """Shapes, types and bounds; `validate` resolves the cameras in `context["organization"]`
    and checks the quiet hours against `context["instance"]` (on a change) when only one end
    is given."""

    name = serializers.CharField(max_length=80)
    enabled = serializers.BooleanField(required=False)
    cameras = serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=CAMERAS_MAX, required=False
    )
    classes = serializers.ListField(
        child=serializers.CharField(max_length=CLASS_MAX, allow_blank=True),
        max_length=MAX_CLASSES,
        required=False,
    )
    zones = serializers.ListField(
        child=serializers.CharField(max_length=ZONE_MAX, allow_blank=True),
        max_length=MAX_ZONES,
        required=False,
    )
    min_confidence = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    min_duration_seconds = serializers.FloatField(min_value=0.0, max_value=86400.0, required=False)
    quiet_hours_start = serializers.TimeField(
        input_formats=TIME_FORMATS, allow_null=True, required=False, help_text="HH:MM"
    )
    quiet_hours_end = serializers.TimeField(
        input_formats=TIME_FORMATS, allow_null=True, required=False, help_text="HH:MM"
    )
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=86400, required=False)

    def validate_classes(self, value: list[str]) -> list[str]:
        return classes_clean(value)

    def validate_zones(self, value: list[str]) -> list[str]:
        return zones_clean(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.context.get("instance")
        start = attrs.get("quiet_hours_start", getattr(instance, "quiet_hours_start", None))
        end = attrs.get("quiet_hours_end", getattr(instance, "quiet_hours_end", None))
        quiet_hours_check(start, end)
        if "cameras" in attrs:
            try:
                attrs["cameras"] = organization_cameras_get(
                    organization=self.context["organization"], public_ids=attrs["cameras"]
                )
            except ValidationError as invalid:
                raise serializers.ValidationError({"cameras": invalid.messages}) from None
        return attrs


class AlertRuleInputSerializer(AlertFilterInputSerializer):
    notify_browser = serializers.BooleanField(required=False)
    notify_mqtt = serializers.BooleanField(required=False)


class WebhookInputSerializer(AlertFilterInputSerializer):
    url = serializers.CharField(max_length=URL_MAX, validators=[webhook_url_validate])
    secret = serializers.RegexField(
        r"^[\x21-\x7e]+$",
        min_length=SECRET_MIN,
        max_length=SECRET_MAX,
        required=False,
        help_text=f"{SECRET_MIN}–{SECRET_MAX} printable ASCII characters, no spaces; "
        "generated (whsec_…) when left out.",
        error_messages={"invalid": "Printable ASCII characters only, no spaces."},
    )
    include_snapshot = serializers.BooleanField(required=False)
