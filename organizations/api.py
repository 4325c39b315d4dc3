"""JSON API for tokens, organizations and their members."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from organizations.models import SYSTEM_PROMPT_MAX_LENGTH, Membership, Organization
from organizations.permissions import role_of, roles_by_organization
from organizations.selectors import (
    organization_get_for_user,
    organization_members_strongest_first,
    organizations_for_user,
)
from organizations.services import (
    MembershipConflict,
    api_token_create,
    member_add,
    member_remove,
    member_role_change,
    organization_create,
    organization_delete,
    organization_update,
)
from project.api_errors import api_validation_error, object_body
from project.login_limits import lockout_api_response, login_lockout_of
from project.pagination import Pagination


class TokenCreateApi(APIView):
    # Guessing is limited per account and per client address in project.login_limits (failed
    # attempts only). A request-rate throttle here as well would answer a locked-out person's
    # retry with a second kind of 429 and could outlast the lockout it reports.
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    @extend_schema(
        summary="Create an API token from a username and password",
        request=InputSerializer,
        responses={
            201: inline_serializer("Token", {"token": serializers.CharField()}),
            401: OpenApiResponse(description="Wrong username or password."),
            429: OpenApiResponse(
                description="Too many failed attempts for this username or from this address "
                "(project.login_limits): wait `Retry-After` seconds."
            ),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None:
            if lockout := login_lockout_of(request):
                return lockout_api_response(lockout)
            return Response(
                {"error": "Wrong username or password.", "code": "invalid_credentials"},
                status=status.HTTP_401_UNAUTHORIZED,
            )
        _, raw = api_token_create(user=user, name="Created through /api/v1/auth/token")
        return Response({"token": raw}, status=status.HTTP_201_CREATED)


class OrganizationOutputSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "slug",
            "server_host_url",
            "ws_port",
            "time_zone",
            "system_prompt",
            "role",
            "created_at",
        ]

    def get_role(self, organization: Organization) -> str | None:
        roles = self.context.get("roles")
        if roles is not None:
            return roles.get(organization.pk)
        return role_of(user=self.context["request"].user, organization=organization)


class MemberPagination(Pagination):
    default_limit = 100
    max_limit = 1000


def _conflict(exc: MembershipConflict) -> Response:
    return Response({"error": exc.message, "code": exc.code}, status=status.HTTP_409_CONFLICT)


def _organization_or_404(request, organization_id: int) -> Organization:
    organization = organization_get_for_user(user=request.user, organization_id=organization_id)
    if organization is None:
        raise NotFound()
    return organization


class OrganizationListApi(APIView):
    pagination_class = Pagination

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=120)
        server_host_url = serializers.CharField(max_length=255, required=False, allow_blank=True)
        ws_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)

    @extend_schema(
        summary="List your organizations",
        operation_id="organizations_list",
        responses=OrganizationOutputSerializer(many=True),
    )
    def get(self, request):
        paginator = self.pagination_class()
        organizations = paginator.paginate_queryset(
            organizations_for_user(user=request.user).order_by("name", "pk"), request, view=self
        )
        context = {"request": request, "roles": roles_by_organization(user=request.user)}
        return paginator.get_paginated_response(
            OrganizationOutputSerializer(organizations, many=True, context=context).data
        )

    @extend_schema(
        summary="Create an organization (you own it)",
        request=InputSerializer,
        responses={201: OrganizationOutputSerializer},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=object_body(request))
        serializer.is_valid(raise_exception=True)
        try:
            organization = organization_create(owner=request.user, **serializer.validated_data)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        data = OrganizationOutputSerializer(organization, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)


class OrganizationDetailApi(APIView):
    class UpdateSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=120, required=False)
        server_host_url = serializers.CharField(max_length=255, required=False, allow_blank=True)
        ws_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
        # Lengths are checked by the model (its messages name the limit); these caps only
        # keep a huge value from being echoed back.
        time_zone = serializers.CharField(
            max_length=64,
            required=False,
            allow_blank=True,
            help_text="IANA name such as Europe/Paris; blank = the server's TIME_ZONE.",
        )
        system_prompt = serializers.CharField(
            max_length=SYSTEM_PROMPT_MAX_LENGTH,
            required=False,
            allow_blank=True,
            trim_whitespace=False,
            help_text="Instructions the assistant follows in this organization's chats.",
        )

    @extend_schema(summary="Get an organization", responses=OrganizationOutputSerializer)
    def get(self, request, organization_id: int):
        organization = _organization_or_404(request, organization_id)
        return Response(
            OrganizationOutputSerializer(organization, context={"request": request}).data
        )

    @extend_schema(
        summary="Change an organization's name, WebSocket host, time zone or assistant "
        "instructions (admins and owners)",
        request=UpdateSerializer,
        responses={
            200: OrganizationOutputSerializer,
            403: OpenApiResponse(description="Your role does not allow this (`forbidden`)."),
        },
    )
    def patch(self, request, organization_id: int):
        organization = _organization_or_404(request, organization_id)
        serializer = self.UpdateSerializer(data=object_body(request))
        serializer.is_valid(raise_exception=True)
        try:
            organization = organization_update(
                actor=request.user, organization=organization, **serializer.validated_data
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(
            OrganizationOutputSerializer(organization, context={"request": request}).data
        )

    @extend_schema(
        summary="Delete an organization with its cameras, events and chats (owners)",
        responses={
            204: None,
            403: OpenApiResponse(description="Your role does not allow this (`forbidden`)."),
        },
    )
    def delete(self, request, organization_id: int):
        organization = _organization_or_404(request, organization_id)
        organization_delete(actor=request.user, organization=organization)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberOutputSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "joined_at"]


class MemberListApi(APIView):
    pagination_class = MemberPagination

    class InputSerializer(serializers.Serializer):
        user = serializers.CharField(max_length=254, help_text="A username or e-mail address.")
        # A string checked by the service (ChoiceField would echo a huge value back).
        role = serializers.CharField(max_length=20, help_text="viewer, member, admin or owner")

    @extend_schema(
        summary="List an organization's members",
        operation_id="organization_members_list",
        responses=MemberOutputSerializer(many=True),
    )
    def get(self, request, organization_id: int):
        organization = _organization_or_404(request, organization_id)
        paginator = self.pagination_class()
        members = paginator.paginate_queryset(
            organization_members_strongest_first(organization=organization), request, view=self
        )
        return paginator.get_paginated_response(MemberOutputSerializer(members, many=True).data)

    @extend_schema(
        summary="Add a user by username or e-mail (admins: members and viewers; owners: any)",
        request=InputSerializer,
        responses={
            201: MemberOutputSerializer,
            403: OpenApiResponse(description="Your role does not allow this (`forbidden`)."),
            409: OpenApiResponse(description="Already a member (`already_member`)."),
        },
    )
    def post(self, request, organization_id: int):
        organization = _organization_or_404(request, organization_id)
        serializer = self.InputSerializer(data=object_body(request))
        serializer.is_valid(raise_exception=True)
        try:
            membership = member_add(
                actor=request.user,
                organization=organization,
                identifier=serializer.validated_data["user"],
                role=serializer.validated_data["role"],
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        except MembershipConflict as exc:
            return _conflict(exc)
        return Response(MemberOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    class UpdateSerializer(serializers.Serializer):
        role = serializers.CharField(max_length=20, help_text="viewer, member, admin or owner")

    @extend_schema(
        summary="Change a member's role",
        request=UpdateSerializer,
        responses={
            200: MemberOutputSerializer,
            403: OpenApiResponse(description="Your role does not allow this (`forbidden`)."),
            409: OpenApiResponse(description="The last owner stays an owner (`last_owner`)."),
        },
    )
    def patch(self, request, organization_id: int, user_id: int):
        organization = _organization_or_404(request, organization_id)
        serializer = self.UpdateSerializer(data=object_body(request))
        serializer.is_valid(raise_exception=True)
        try:
            membership = member_role_change(
                actor=request.user,
                organization=organization,
                user_id=user_id,
                role=serializer.validated_data["role"],
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        except MembershipConflict as exc:
            return _conflict(exc)
        if membership is None:
            raise NotFound()
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(
        summary="Remove a member",
        responses={
            204: None,
            403: OpenApiResponse(description="Your role does not allow this (`forbidden`)."),
            409: OpenApiResponse(description="The last owner cannot be removed (`last_owner`)."),
        },
    )
    def delete(self, request, organization_id: int, user_id: int):
        organization = _organization_or_404(request, organization_id)
        try:
            removed = member_remove(actor=request.user, organization=organization, user_id=user_id)
        except MembershipConflict as exc:
            return _conflict(exc)
        if not removed:
            raise NotFound()
        return Response(status=status.HTTP_204_NO_CONTENT)
