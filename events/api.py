"""JSON API for events, snapshots, sessions and activity: thin views over `events.selectors`."""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.files.storage import default_storage
from django.http import FileResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from cameras.selectors import camera_get_for_user
from events.models import CameraSession, DetectionEvent, EventZone
from events.selectors import (
    ActivityTooLarge,
    EventFilter,
    activity_bucket_parse,
    event_activity,
    event_get_for_user,
    event_list,
    events_for_user,
    session_list,
    sessions_for_user,
)
from project.pagination import Pagination
from project.query_params import BoundedDateTimeField, IdField
from project.ranges import ranged_file_response

DEFAULT_ACTIVITY_WINDOW = timedelta(hours=24)
_LABEL = re.compile(r"^[\w .:-]{1,64}$")


class EventZoneSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="zone")

    class Meta:
        model = EventZone
        fields = ["name", "entered_at"]


class EventOutputSerializer(serializers.ModelSerializer):
    camera_id = serializers.CharField(source="camera.public_id")
    camera_name = serializers.CharField(source="camera.name")
    ongoing = serializers.BooleanField(source="is_open")
    bbox = serializers.JSONField(source="best_bbox")
    duration_seconds = serializers.FloatField(read_only=True)
    zones = EventZoneSerializer(many=True, read_only=True)
    snapshot_url = serializers.SerializerMethodField()
    clip_url = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = DetectionEvent
        fields = [
            "id",
            "camera_id",
            "camera_name",
            "started_at",
            "last_seen_at",
            "ended_at",
            "ongoing",
            "peak_confidence",
            "frames_seen",
            "duration_seconds",
            "bbox",
            "track_id",
            "zones",
            "path",
            "session_id",
            "snapshot_url",
            "clip_url",
            "clip_started_at",
            "clip_duration_ms",
            "url",
        ]

    def get_snapshot_url(self, event: DetectionEvent) -> str | None:
        return f"/api/v1/events/{event.pk}/snapshot" if event.snapshot else None

    def get_clip_url(self, event: DetectionEvent) -> str | None:
        return f"/api/v1/events/{event.pk}/clip" if event.clip else None

    def get_url(self, event: DetectionEvent) -> str:
        return f"/events/{event.pk}"

    def to_representation(self, instance: DetectionEvent) -> dict:
        # The seed's detections call the label `class` (a keyword here, so not a field name).
        data = super().to_representation(instance)
        return {"id": data.pop("id"), "class": instance.label, **data}


class SessionOutputSerializer(serializers.ModelSerializer):
    camera_id = serializers.CharField(source="camera.public_id")
    ongoing = serializers.BooleanField(source="is_open")

    class Meta:
        model = CameraSession
        fields = [
            "id",
            "camera_id",
            "started_at",
            "last_frame_at",
            "ended_at",
            "ongoing",
            "frames_processed",
            "measured_fps",
            "counts",
        ]


class EventFilterSerializer(serializers.Serializer):
    """Query parameters of GET /api/v1/events. Naive times are in the server's TIME_ZONE."""

    camera = serializers.CharField(max_length=32, required=False)
    # `class` is a Python keyword, so the field is renamed in __init__ (its errors say
    # `class`; its value stays under its source name, `label`).
    label = serializers.CharField(max_length=64, required=False)
    since = BoundedDateTimeField(required=False)
    until = BoundedDateTimeField(required=False)
    session = IdField(required=False)
    zone = serializers.CharField(
        max_length=40, required=False, help_text="Only events whose object entered this zone."
    )
    tracked = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: only tracked objects' events; false: only motion events.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["class"] = self.fields.pop("label")

    def validate_class(self, value: str) -> str:
        if not _LABEL.match(value):
            raise serializers.ValidationError(
                "class may hold letters, digits, spaces, dots, colons, dashes and underscores."
            )
        return value

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError({"until": "until must be later than since."})
        return attrs

    def to_filter(self) -> EventFilter:
        data = self.validated_data
        return EventFilter(
            camera_public_ids=(data["camera"],) if data.get("camera") else (),
            labels=(data["label"],) if data.get("label") else (),
            since=data.get("since"),
            until=data.get("until"),
            session_id=data.get("session"),
            tracked=data.get("tracked"),
            zone=data.get("zone"),
        )


class EventListApi(APIView):
    pagination_class = Pagination

    @extend_schema(
        summary="List detection events, newest first",
        parameters=[EventFilterSerializer],
        responses=EventOutputSerializer(many=True),
    )
    def get(self, request):
        params = EventFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        events = event_list(events=events_for_user(user=request.user), filters=params.to_filter())
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(EventOutputSerializer(page, many=True).data)


class EventDetailApi(APIView):
    @extend_schema(summary="Get a detection event", responses=EventOutputSerializer)
    def get(self, request, event_id: int):
        event = event_get_for_user(user=request.user, event_id=event_id)
        if event is None:
            raise NotFound()
        return Response(EventOutputSerializer(event).data)


class EventSnapshotApi(APIView):
    """The event's JPEG, served only through this scoped view (snapshots are not public media)."""

    @extend_schema(
        summary="Get an event's snapshot (JPEG)",
        responses={(200, "image/jpeg"): OpenApiResponse(response=OpenApiTypes.BINARY)},
    )
    def get(self, request, event_id: int):
        event = event_get_for_user(user=request.user, event_id=event_id)
        if event is None or not event.snapshot or not default_storage.exists(event.snapshot.name):
            raise NotFound()
        response = FileResponse(
            default_storage.open(event.snapshot.name), content_type="image/jpeg"
        )
        # An open event's snapshot may still be replaced by a better one.
        response["Cache-Control"] = "private, max-age=86400" if event.ended_at else "no-cache"
        return response


class EventClipApi(APIView):
    """The event's MP4 clip, served only through this scoped view (clips are not public media),
    with byte ranges so that a `<video>` can seek it."""

    @extend_schema(
        summary="Get an event's video clip (MP4, byte ranges supported)",
        responses={
            (200, "video/mp4"): OpenApiResponse(response=OpenApiTypes.BINARY),
            (206, "video/mp4"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The byte range asked for."
            ),
            416: OpenApiResponse(description="The range starts past the end of the clip."),
        },
    )
    def get(self, request, event_id: int):
        event = event_get_for_user(user=request.user, event_id=event_id)
        if event is None or not event.clip or not default_storage.exists(event.clip.name):
            raise NotFound()
        name = event.clip.name
        response = ranged_file_response(
            request,
            file=default_storage.open(name),
            size=default_storage.size(name),
            modified=default_storage.get_modified_time(name).timestamp(),
            content_type="video/mp4",
        )
        # A clip is written once, whole, and never changed.
        response["Cache-Control"] = "private, max-age=86400"
        return response


def _camera_or_404(request, camera_id: str):
    camera = camera_get_for_user(user=request.user, public_id=camera_id)
    if camera is None:
        raise NotFound()
    return camera


class CameraSessionListApi(APIView):
    pagination_class = Pagination

    @extend_schema(
        summary="List a camera's capture sessions, newest first",
        responses=SessionOutputSerializer(many=True),
    )
    def get(self, request, camera_id: str):
        camera = _camera_or_404(request, camera_id)
        sessions = session_list(sessions=sessions_for_user(user=request.user), camera=camera)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(sessions, request, view=self)
        return paginator.get_paginated_response(SessionOutputSerializer(page, many=True).data)


class ActivityParamsSerializer(serializers.Serializer):
    since = BoundedDateTimeField(required=False)
    until = BoundedDateTimeField(required=False)
    bucket = serializers.CharField(max_length=8, required=False, default="1h")

    def validate_bucket(self, value: str) -> timedelta:
        try:
            return activity_bucket_parse(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - DEFAULT_ACTIVITY_WINDOW
        if since >= until:
            raise serializers.ValidationError({"until": "until must be later than since."})
        attrs["since"], attrs["until"] = since, until
        return attrs


class CameraActivityApi(APIView):
    """Events started per class per bucket (default: the last 24 hours in 1 h buckets)."""

    @extend_schema(
        summary="Count a camera's events per class per time bucket",
        parameters=[ActivityParamsSerializer],
        responses=inline_serializer(
            "Activity",
            {
                "camera_id": serializers.CharField(),
                "since": serializers.DateTimeField(),
                "until": serializers.DateTimeField(),
                "bucket_seconds": serializers.IntegerField(),
                "buckets": serializers.ListField(
                    child=serializers.DateTimeField(), help_text="The start of each bucket."
                ),
                "series": serializers.DictField(
                    child=serializers.ListField(child=serializers.IntegerField()),
                    help_text="Per class, the events started in each bucket.",
                ),
                "totals": serializers.DictField(child=serializers.IntegerField()),
            },
        ),
    )
    def get(self, request, camera_id: str):
        camera = _camera_or_404(request, camera_id)
        params = ActivityParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            activity = event_activity(
                events=events_for_user(user=request.user).filter(camera=camera),
                since=data["since"],
                until=data["until"],
                bucket=data["bucket"],
            )
        except ActivityTooLarge as exc:
            raise ApiValidationError({"bucket": [str(exc)]}) from None
        return Response(
            {
                "camera_id": camera.public_id,
                "since": activity.since,
                "until": activity.until,
                "bucket_seconds": int(activity.bucket.total_seconds()),
                "buckets": activity.starts,
                "series": activity.series,
                "totals": activity.totals,
            }
        )
