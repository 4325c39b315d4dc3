"""JSON API for alert rules, webhooks, the delivery log and the test send: thin views over the
selectors and services (who may do what: notifications/serializers.py's docstring)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.models import AlertRule, Webhook
from notifications.selectors import alert_source_get_for_user, deliveries_for_webhook
from notifications.serializers import (
    AlertRuleInputSerializer,
    AlertRuleOutputSerializer,
    WebhookDeliveryOutputSerializer,
    WebhookInputSerializer,
    WebhookOutputSerializer,
)
from notifications.services import (
    WebhookTestRateLimited,
    alert_filter_create,
    alert_filter_delete,
    alert_filter_update,
    webhook_secret_rotate,
    webhook_test_send,
)
from organizations.models import Organization
from organizations.permissions import Action, permission_require, roles_by_organization
from organizations.selectors import (
    LARGEST_ID,
    organization_default_for_user,
    organization_get_for_user,
    organizations_for_user,
)
from project.api_errors import object_body
from project.pagination import Pagination

READ = Action.REVIEW_EVENTS
MANAGE = Action.EDIT_ORGANIZATION

ORGANIZATION_PARAMETER = OpenApiParameter(
    "organization", int, description="Only this organization's (one of yours)."
)


def _organization_to_create_in(request, organization_id: int | None) -> Organization:
    if organization_id is None:
        organization = organization_default_for_user(user=request.user)
        if organization is None:
            raise ApiValidationError(
                {"organization": ["You belong to several organizations (or none): say which."]}
            )
        return organization
    organization = organization_get_for_user(user=request.user, organization_id=organization_id)
    if organization is None:
        raise ApiValidationError({"organization": ["No organization with this id among yours."]})
    return organization


def _organization_filter(request) -> int | None:
    raw = request.query_params.get("organization")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= LARGEST_ID:
        raise ApiValidationError({"organization": ["An organization id (a whole number)."]})
    return int(raw)


def _get_with_role(request, model, pk: int):
    """The rule or webhook with the reader's `member_role`; NotFound outside their
    organizations."""
    found = alert_source_get_for_user(model=model, pk=pk, user=request.user)
    if found is None:
        raise NotFound()
    return found


class _AlertFilterApi(APIView):
    """What the rule and webhook views share; subclasses name the model and serializers."""

    model: type[AlertRule] | type[Webhook]
    input_serializer: type[serializers.Serializer]
    output_serializer: type[serializers.Serializer]

    def _output(self, rule, role: str | None) -> dict:
        return self.output_serializer(rule, context={"roles": {rule.organization_id: role}}).data


class _AlertFilterListApi(_AlertFilterApi):
    pagination_class = Pagination

    def _list(self, request):
        rules = self.model.objects.filter(
            organization__in=organizations_for_user(user=request.user)
        ).prefetch_related("cameras")
        organization_id = _organization_filter(request)
        if organization_id is not None:
            rules = rules.filter(organization_id=organization_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rules.order_by("name", "id"), request, view=self)
        context = {"roles": roles_by_organization(user=request.user)}
        return paginator.get_paginated_response(
            self.output_serializer(page, many=True, context=context).data
        )

    def _create(self, request):
        body = object_body(request)
        organization_field = serializers.IntegerField(required=False, allow_null=True)
        try:
            organization_id = organization_field.run_validation(body.get("organization"))
        except serializers.ValidationError as invalid:
            raise ApiValidationError({"organization": invalid.detail}) from None
        organization = _organization_to_create_in(request, organization_id)
        role = permission_require(user=request.user, organization=organization, action=MANAGE)
        fields = {name: value for name, value in body.items() if name != "organization"}
        serializer = self.input_serializer(data=fields, context={"organization": organization})
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        rule = alert_filter_create(
            model=self.model,
            organization=organization,
            cameras=values.pop("cameras", []),
            **values,
        )
        return Response(self._output(rule, role), status=status.HTTP_201_CREATED)


class _AlertFilterDetailApi(_AlertFilterApi):
    def _to_manage(self, request, pk: int):
        rule = _get_with_role(request, self.model, pk)
        permission_require(
            user=request.user, organization=rule.organization, action=MANAGE, role=rule.member_role
        )
        return rule

    def _get(self, request, pk: int):
        rule = _get_with_role(request, self.model, pk)
        permission_require(
            user=request.user, organization=rule.organization, action=READ, role=rule.member_role
        )
        return Response(self._output(rule, rule.member_role))

    def _patch(self, request, pk: int):
        rule = self._to_manage(request, pk)
        serializer = self.input_serializer(
            data=object_body(request),
            partial=True,
            context={"organization": rule.organization, "instance": rule},
        )
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        rule = alert_filter_update(rule=rule, cameras=values.pop("cameras", None), **values)
        return Response(self._output(rule, rule.member_role))

    def _delete(self, request, pk: int):
        alert_filter_delete(rule=self._to_manage(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganizationField(serializers.Serializer):
    organization = serializers.IntegerField(
        required=False,
        help_text="May be left out by a member of exactly one organization.",
    )


class AlertRuleCreateSerializer(OrganizationField, AlertRuleInputSerializer):
    pass


class WebhookCreateSerializer(OrganizationField, WebhookInputSerializer):
    pass


class AlertRuleListApi(_AlertFilterListApi):
    model = AlertRule
    input_serializer = AlertRuleInputSerializer
    output_serializer = AlertRuleOutputSerializer

    @extend_schema(
        summary="List the alert rules of your organizations",
        operation_id="alert_rules_list",
        parameters=[ORGANIZATION_PARAMETER],
        responses=AlertRuleOutputSerializer(many=True),
    )
    def get(self, request):
        return self._list(request)

    @extend_schema(
        summary="Add an alert rule (admins and owners)",
        request=AlertRuleCreateSerializer,
        responses={201: AlertRuleOutputSerializer},
    )
    def post(self, request):
        return self._create(request)


class AlertRuleDetailApi(_AlertFilterDetailApi):
    model = AlertRule
    input_serializer = AlertRuleInputSerializer
    output_serializer = AlertRuleOutputSerializer

    @extend_schema(summary="Get an alert rule", responses=AlertRuleOutputSerializer)
    def get(self, request, rule_id: int):
        return self._get(request, rule_id)

    @extend_schema(
        summary="Change an alert rule (admins and owners)",
        request=AlertRuleInputSerializer,
        responses=AlertRuleOutputSerializer,
    )
    def patch(self, request, rule_id: int):
        return self._patch(request, rule_id)

    @extend_schema(summary="Delete an alert rule with its alerts", responses={204: None})
    def delete(self, request, rule_id: int):
        return self._delete(request, rule_id)


class WebhookListApi(_AlertFilterListApi):
    model = Webhook
    input_serializer = WebhookInputSerializer
    output_serializer = WebhookOutputSerializer

    @extend_schema(
        summary="List the webhooks of your organizations",
        description="`secret` is null and `url` masked unless you are an admin or owner.",
        operation_id="webhooks_list",
        parameters=[ORGANIZATION_PARAMETER],
        responses=WebhookOutputSerializer(many=True),
    )
    def get(self, request):
        return self._list(request)

    @extend_schema(
        summary="Add a webhook (admins and owners)",
        description="The answer carries the `secret` (generated when not given): keep it to "
        "verify the `X-Sightline-Signature` of each delivery.",
        request=WebhookCreateSerializer,
        responses={201: WebhookOutputSerializer},
    )
    def post(self, request):
        return self._create(request)


class WebhookDetailApi(_AlertFilterDetailApi):
    model = Webhook
    input_serializer = WebhookInputSerializer
    output_serializer = WebhookOutputSerializer

    @extend_schema(summary="Get a webhook", responses=WebhookOutputSerializer)
    def get(self, request, webhook_id: int):
        return self._get(request, webhook_id)

    @extend_schema(
        summary="Change a webhook (admins and owners)",
        description="A `secret` given here replaces the current one.",
        request=WebhookInputSerializer,
        responses=WebhookOutputSerializer,
    )
    def patch(self, request, webhook_id: int):
        return self._patch(request, webhook_id)

    @extend_schema(
        summary="Delete a webhook with its alerts and delivery log", responses={204: None}
    )
    def delete(self, request, webhook_id: int):
        return self._delete(request, webhook_id)


class WebhookRotateSecretApi(_AlertFilterDetailApi):
    model = Webhook
    output_serializer = WebhookOutputSerializer

    @extend_schema(
        summary="Give a webhook a new secret (admins and owners)",
        request=None,
        responses=WebhookOutputSerializer,
    )
    def post(self, request, webhook_id: int):
        webhook = webhook_secret_rotate(webhook=self._to_manage(request, webhook_id))
        return Response(self._output(webhook, webhook.member_role))


class TestSendsRateLimited(APIException):
    """429 with Retry-After (DRF's handler sets it from `wait`), code `rate_limited` as the
    camera source test's."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "rate_limited"

    def __init__(self, limited: WebhookTestRateLimited):
        super().__init__(detail=str(limited), code="rate_limited")
        self.wait = limited.wait_seconds


class DeliveryPagination(Pagination):
    default_limit = 50
    max_limit = 200


class WebhookDeliveryListApi(APIView):
    pagination_class = DeliveryPagination

    @extend_schema(
        summary="A webhook's delivery log, newest first",
        operation_id="webhook_deliveries_list",
        responses=WebhookDeliveryOutputSerializer(many=True),
    )
    def get(self, request, webhook_id: int):
        webhook = _get_with_role(request, Webhook, webhook_id)
        permission_require(
            user=request.user,
            organization=webhook.organization,
            action=READ,
            role=webhook.member_role,
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            deliveries_for_webhook(webhook=webhook).order_by("-created_at", "-id"),
            request,
            view=self,
        )
        return paginator.get_paginated_response(
            WebhookDeliveryOutputSerializer(page, many=True).data
        )


class WebhookTestApi(_AlertFilterDetailApi):
    model = Webhook

    @extend_schema(
        summary="Send a test delivery (admins and owners)",
        description='Queues a signed POST with a sample alert body (`"type": "test"`); it '
        "is sent, retried and logged as any other delivery. Limited to "
        "WEBHOOK_TESTS_PER_MINUTE a user.",
        request=None,
        responses={
            202: WebhookDeliveryOutputSerializer,
            429: OpenApiResponse(description="Too many test sends this minute."),
        },
    )
    def post(self, request, webhook_id: int):
        webhook = self._to_manage(request, webhook_id)
        try:
            delivery = webhook_test_send(webhook, request.user)
        except WebhookTestRateLimited as limited:
            raise TestSendsRateLimited(limited) from None
        return Response(
            WebhookDeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED
        )
