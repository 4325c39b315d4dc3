"""GET /api/v1/alerts: the alerts of the user's organizations, newest first (the bell reads
`?browser=true&limit=20`). Thin: filters parsed here, listed by `notifications.alert_listing`."""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from notifications.alert_listing import AlertListFilter, alert_item, alerts_filtered
from notifications.selectors import alerts_for_user
from project.pagination import Pagination
from project.query_params import BoundedDateTimeField, IdField

_CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _named(name: str) -> serializers.Serializer:
    return inline_serializer(
        name=name, fields={"id": serializers.IntegerField(), "name": serializers.CharField()}
    )


class AlertEventSerializer(serializers.Serializer):
    """The event of an alert (notifications.payloads.event_body)."""

    id = serializers.IntegerField()
    camera = inline_serializer(
        name="AlertCamera", fields={"id": serializers.CharField(), "name": serializers.CharField()}
    )
    label = serializers.CharField()
    track_id = serializers.IntegerField(allow_null=True)
    zones = serializers.ListField(child=serializers.CharField())
    started_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField()
    peak_confidence = serializers.FloatField()
    links = inline_serializer(
        name="AlertEventLinks",
        fields={
            "page": serializers.CharField(),
            "snapshot": serializers.CharField(),
            "clip": serializers.CharField(),
        },
    )


class AlertOutputSerializer(serializers.Serializer):
    """How GET /api/v1/alerts and the bell's socket tell an alert (built by
    notifications.alert_listing; this describes it for the schema)."""

    version = serializers.IntegerField()
    type = serializers.CharField()
    alert = inline_serializer(
        name="AlertRaised",
        fields={"id": serializers.IntegerField(), "created_at": serializers.DateTimeField()},
    )
    rule = _named("AlertRuleRef")
    webhook = _named("AlertWebhookRef")
    organization = serializers.CharField(help_text="The organization's slug.")
    event = AlertEventSerializer()
    snapshot_url = serializers.CharField(help_text="The event's snapshot, for this session.")
    url = serializers.CharField(help_text="The event's page.")
    delivery = inline_serializer(
        name="AlertDelivery",
        allow_null=True,
        fields={
            "status": serializers.ChoiceField(choices=["pending", "delivered", "failed"]),
            "attempts": serializers.IntegerField(),
            "response_status": serializers.IntegerField(allow_null=True),
            "last_error": serializers.CharField(),
            "delivered_at": serializers.DateTimeField(allow_null=True),
        },
        help_text="A webhook's alert only: how its delivery went.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Either a rule's or a webhook's; a delivery only for a webhook's.
        for name in ("rule", "webhook", "delivery"):
            self.fields[name].required = False


class AlertFilterSerializer(serializers.Serializer):
    """Query parameters of GET /api/v1/alerts. Naive times are in the server's TIME_ZONE;
    `until` is exclusive. An alert counts in a window when it was raised in it."""

    since = BoundedDateTimeField(required=False)
    until = BoundedDateTimeField(required=False)
    organization = IdField(required=False, help_text="An organization's id.")
    camera = serializers.CharField(max_length=32, required=False, help_text="A camera's id.")
    rule = IdField(required=False, help_text="Only this alert rule's alerts.")
    webhook = IdField(required=False, help_text="Only this webhook's alerts.")
    browser = serializers.BooleanField(
        required=False,
        default=False,
        help_text="true: only the bell's (alerts of rules that notify the browser).",
    )

    def validate_camera(self, value: str) -> str:
        if not _CAMERA_ID.match(value):
            raise serializers.ValidationError(
                "camera is a camera id: letters, digits, dashes and underscores."
            )
        return value

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError({"until": "until must be later than since."})
        if attrs.get("rule") and attrs.get("webhook"):
            raise serializers.ValidationError(
                {"webhook": "An alert has a rule or a webhook: ask for one of them."}
            )
        return attrs

    def to_filter(self) -> AlertListFilter:
        data = self.validated_data
        return AlertListFilter(
            since=data.get("since"),
            until=data.get("until"),
            organization_pk=data.get("organization"),
            camera_public_id=data.get("camera"),
            rule_pk=data.get("rule"),
            webhook_pk=data.get("webhook"),
            browser=data.get("browser", False),
        )


class AlertListApi(APIView):
    pagination_class = Pagination

    @extend_schema(
        summary="List alerts, newest first",
        parameters=[AlertFilterSerializer],
        responses=AlertOutputSerializer(many=True),
    )
    def get(self, request):
        params = AlertFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        alerts = alerts_filtered(alerts_for_user(user=request.user), params.to_filter())
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(alerts, request, view=self)
        return paginator.get_paginated_response([alert_item(alert) for alert in page])
