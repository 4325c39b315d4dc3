"""JSON API for tokens and organizations."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from organizations.models import Organization
from organizations.selectors import (
    membership_role,
    organization_get_for_user,
    organizations_for_user,
)
from organizations.services import api_token_create, organization_create
from project.login_limits import lockout_api_response, login_lockout_of


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
        fields = ["id", "name", "slug", "server_host_url", "ws_port", "role", "created_at"]

    def get_role(self, organization: Organization) -> str | None:
        return membership_role(user=self.context["request"].user, organization=organization)


class OrganizationListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=120)
        server_host_url = serializers.CharField(max_length=255, required=False, allow_blank=True)
        ws_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)

    @extend_schema(
        summary="List your organizations",
        operation_id="organizations_list",
        responses=inline_serializer(
            "OrganizationList", {"results": OrganizationOutputSerializer(many=True)}
        ),
    )
    def get(self, request):
        organizations = organizations_for_user(user=request.user)
        data = OrganizationOutputSerializer(
            organizations, many=True, context={"request": request}
        ).data
        return Response({"results": data})

    @extend_schema(
        summary="Create an organization (you own it)",
        request=InputSerializer,
        responses={201: OrganizationOutputSerializer},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = organization_create(owner=request.user, **serializer.validated_data)
        data = OrganizationOutputSerializer(organization, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)


class OrganizationDetailApi(APIView):
    @extend_schema(summary="Get an organization", responses=OrganizationOutputSerializer)
    def get(self, request, organization_id: int):
        organization = organization_get_for_user(user=request.user, organization_id=organization_id)
        if organization is None:
            return Response(
                {"error": "Not found.", "code": "not_found"}, status=status.HTTP_404_NOT_FOUND
            )
        return Response(
            OrganizationOutputSerializer(organization, context={"request": request}).data
        )
