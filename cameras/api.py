"""JSON API for cameras: thin views over the selectors and services."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from cameras.models import Camera
from cameras.selectors import (
    camera_get_for_user,
    camera_health_many,
    camera_source_for_role,
    cameras_for_user,
)
from cameras.services import EDITABLE_FIELDS, camera_create, camera_delete, camera_update
from organizations.permissions import Action, permission_require, roles_by_organization
from organizations.selectors import organization_default_for_user, organization_get_for_user
from project.api_errors import api_validation_error
from project.pagination import Pagination


class CameraHealthSerializer(serializers.Serializer):
    capture = serializers.CharField()
    measured_fps = serializers.FloatField(allow_null=True)
    last_frame_at = serializers.DateTimeField(allow_null=True)
    last_frame_age_seconds = serializers.FloatField(allow_null=True)
    last_error = serializers.CharField()
    recorder = serializers.CharField()
    last_event_at = serializers.DateTimeField(allow_null=True)
    last_event_age_seconds = serializers.FloatField(allow_null=True)


class CameraOutputSerializer(serializers.ModelSerializer):
    """A camera with its live health; pass `context={"health": camera_health_many(...)}` when
    serializing many, so that all their heartbeats are read at once.

    `context["roles"]` (organization id → the reader's role) decides whether `source` shows its
    credentials (admins, owners) or `***` in their place (everyone else). Without it, masked."""

    id = serializers.CharField(source="public_id")
    organization = serializers.IntegerField(source="organization_id")
    source = serializers.SerializerMethodField()
    stream_path = serializers.CharField()
    health = serializers.SerializerMethodField()

    class Meta:
        model = Camera
        fields = [
            "id",
            "organization",
            *EDITABLE_FIELDS,
            "status",
            "last_error",
            "last_frame_at",
            "measured_fps",
            "stream_path",
            "created_at",
            "health",
        ]

    def get_source(self, camera: Camera) -> str:
        role = (self.context.get("roles") or {}).get(camera.organization_id)
        return camera_source_for_role(camera, role)

    @extend_schema_field(CameraHealthSerializer)
    def get_health(self, camera: Camera) -> dict:
        known = self.context.get("health") or {}
        health = (
            known.get(camera.public_id) or camera_health_many(cameras=[camera])[camera.public_id]
        )
        return CameraHealthSerializer(health).data


class CameraInputSerializer(serializers.Serializer):
    """Shapes and types only; the rules (source spec, detector names, ranges) live on the model
    and are checked by the services, so the admin and the API cannot disagree."""

    name = serializers.CharField(max_length=120)
    source = serializers.CharField(max_length=1000)
    enabled = serializers.BooleanField(required=False)
    target_fps = serializers.IntegerField(required=False)
    max_width = serializers.IntegerField(required=False)
    jpeg_quality = serializers.IntegerField(required=False)
    detectors = serializers.ListField(child=serializers.CharField(), required=False)
    min_confidence = serializers.FloatField(required=False)
    onnx_model = serializers.CharField(max_length=500, required=False, allow_blank=True)
    onnx_labels = serializers.CharField(max_length=500, required=False, allow_blank=True)
    # Their shape is checked by the model (cameras.zones), with every problem named.
    zones = serializers.JSONField(required=False)
    motion_masks = serializers.JSONField(required=False)


class CameraPagination(Pagination):
    default_limit = 100
    max_limit = 500


def _single_camera_context(camera: Camera) -> dict:
    # camera_get_for_user loaded the reader's role with the camera.
    return {"roles": {camera.organization_id: getattr(camera, "member_role", None)}}


class CameraListApi(APIView):
    pagination_class = CameraPagination

    class CreateSerializer(CameraInputSerializer):
        organization = serializers.IntegerField(required=False)

    @extend_schema(
        summary="List your cameras, with their live health",
        operation_id="cameras_list",
        responses=CameraOutputSerializer(many=True),
    )
    def get(self, request):
        paginator = self.pagination_class()
        cameras = paginator.paginate_queryset(
            cameras_for_user(user=request.user).order_by("name", "id"), request, view=self
        )
        context = {
            "health": camera_health_many(cameras=cameras),
            "roles": roles_by_organization(user=request.user),
        }
        return paginator.get_paginated_response(
            CameraOutputSerializer(cameras, many=True, context=context).data
        )

    @extend_schema(
        summary="Add a camera",
        description="`organization` may be left out by a member of exactly one organization.",
        request=CreateSerializer,
        responses={201: CameraOutputSerializer},
    )
    def post(self, request):
        serializer = self.CreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        organization_id = fields.pop("organization", None)
        if organization_id is None:
            organization = organization_default_for_user(user=request.user)
            if organization is None:
                raise ApiValidationError(
                    {"organization": ["You belong to several organizations (or none): say which."]}
                )
        else:
            organization = organization_get_for_user(
                user=request.user, organization_id=organization_id
            )
            if organization is None:
                raise ApiValidationError(
                    {"organization": ["No organization with this id among yours."]}
                )
        role = permission_require(
            user=request.user, organization=organization, action=Action.MANAGE_CAMERAS
        )
        try:
            camera = camera_create(organization=organization, **fields)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        context = {"roles": {organization.pk: role}}
        return Response(
            CameraOutputSerializer(camera, context=context).data, status=status.HTTP_201_CREATED
        )


class CameraDetailApi(APIView):
    class UpdateSerializer(CameraInputSerializer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, partial=True, **kwargs)

    def _camera(self, request, camera_id: str) -> Camera:
        camera = camera_get_for_user(user=request.user, public_id=camera_id)
        if camera is None:
            raise NotFound()
        return camera

    def _camera_to_manage(self, request, camera_id: str) -> Camera:
        camera = self._camera(request, camera_id)
        permission_require(
            user=request.user,
            organization=camera.organization,
            action=Action.MANAGE_CAMERAS,
            role=camera.member_role,
        )
        return camera

    @extend_schema(summary="Get a camera", responses=CameraOutputSerializer)
    def get(self, request, camera_id: str):
        camera = self._camera(request, camera_id)
        return Response(CameraOutputSerializer(camera, context=_single_camera_context(camera)).data)

    @extend_schema(
        summary="Change a camera", request=CameraInputSerializer, responses=CameraOutputSerializer
    )
    def patch(self, request, camera_id: str):
        camera = self._camera_to_manage(request, camera_id)
        serializer = self.UpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            camera = camera_update(camera=camera, **serializer.validated_data)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from None
        return Response(CameraOutputSerializer(camera, context=_single_camera_context(camera)).data)

    @extend_schema(summary="Delete a camera", responses={204: None})
    def delete(self, request, camera_id: str):
        camera_delete(camera=self._camera_to_manage(request, camera_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
