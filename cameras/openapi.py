"""The schema of the frame ingest, a plain async view (cameras/views.py) in the seed's body."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers

from cameras import views
from project.openapi import PlainViewDocumentation, documents

DetectionSerializer = inline_serializer(
    name="Detection",
    fields={
        "class": serializers.CharField(help_text="What was detected, e.g. `person`."),
        "confidence": serializers.FloatField(min_value=0, max_value=1),
        "bbox": serializers.ListField(
            child=serializers.IntegerField(),
            min_length=4,
            max_length=4,
            help_text="[x, y, width, height] in pixels of the frame.",
        ),
    },
)

FrameSerializer = inline_serializer(
    name="Frame",
    fields={
        "streamName": serializers.CharField(help_text="Free text, e.g. `webcam`."),
        "streamType": serializers.ChoiceField(choices=["frame"]),
        "frame": serializers.CharField(
            help_text="The JPEG, base64 (a `data:image/jpeg;base64,` URL is accepted too)."
        ),
        "timestamp": serializers.IntegerField(
            help_text="Unix milliseconds; a new frame needs a current one (the sender's clock)."
        ),
        "camera_id": serializers.CharField(),
    },
)

IngestResultSerializer = inline_serializer(
    name="IngestResult",
    fields={
        "camera_id": serializers.CharField(),
        "timestamp": serializers.IntegerField(),
        "detections": DetectionSerializer.__class__(many=True),
        "duplicate": serializers.BooleanField(
            help_text="True when the frame was already published (a player forwarding what it "
            "received): answered with its detections, not broadcast again."
        ),
    },
)


@documents(views.frame_ingest_view)
class FrameIngestDocumentation(PlainViewDocumentation):
    @extend_schema(
        summary="Push a frame into a push: camera (the seed's body)",
        description="A new frame of a `push:` camera is decoded, run through the camera's "
        "detectors and broadcast to its viewers. A frame that was already published (the "
        "seed's player forwards every frame it receives) is answered as a duplicate.",
        request=FrameSerializer,
        responses={
            200: IngestResultSerializer,
            404: OpenApiResponse(description="No camera with this `camera_id` among yours."),
            409: OpenApiResponse(
                description="Not a push: camera, the camera is disabled, or the timestamp is "
                "too old for a new frame."
            ),
            429: OpenApiResponse(
                description="More than CAMERA_INGEST_MAX_FRAMES_PER_SECOND new frames a second."
            ),
        },
        examples=[
            OpenApiExample(
                "A webcam frame",
                value={
                    "streamName": "webcam",
                    "streamType": "frame",
                    "frame": "/9j/4AAQSkZJRgABAQ…",
                    "timestamp": 1764619200000,
                    "camera_id": "cam_2f9c1e",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        """Placeholder: see cameras.views.frame_ingest_view."""
