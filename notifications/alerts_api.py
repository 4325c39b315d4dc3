"""GET /api/v1/alerts: the alerts of the user's organizations, newest first (the bell reads
`?browser=true&limit=20`). Thin: filters parsed here, listed by `notifications.alert_listing`."""

from __future__ import annotations

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from notifications.alert_listing import AlertListFilter, alert_item, alerts_filtered
from notifications.selectors import alerts_for_user
from project.pagination import Pagination
from project.query_params import BoundedDateTimeField, IdField

_CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


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
        responses={200: OpenApiResponse(response=OpenApiTypes.OBJECT)},
    )
    def get(self, request):
        params = AlertFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        alerts = alerts_filtered(alerts_for_user(user=request.user), params.to_filter())
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(alerts, request, view=self)
        return paginator.get_paginated_response([alert_item(alert) for alert in page])
