"""Cameras: where frames come from, how they are processed, and what the workers last saw."""

from __future__ import annotations

import secrets
import string

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from cameras.zones import validate_polygons
from organizations.models import Organization

PUBLIC_ID_ALPHABET = string.ascii_lowercase + string.digits
PUBLIC_ID_LENGTH = 12


def public_id_new() -> str:
    """A random lowercase id: safe in URLs, WebSocket paths and cache keys, and not guessable."""
    return "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def validate_camera_source(value: str) -> None:
    # Imported here so that loading the models does not import OpenCV.
    from cameras.vision.sources import validate_source

    problem = validate_source(value)
    if problem:
        raise ValidationError(problem, code="invalid_source")


def validate_detector_names(value: object) -> None:
    from cameras.vision.detectors import AVAILABLE_DETECTORS

    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("Detectors must be a list of names.", code="invalid_detectors")
    unknown = [name for name in value if name not in AVAILABLE_DETECTORS]
    if unknown:
        raise ValidationError(
            f"Unknown detector(s): {', '.join(unknown)}. "
            f"Available: {', '.join(AVAILABLE_DETECTORS)}.",
            code="invalid_detectors",
        )
    if len(set(value)) != len(value):
        raise ValidationError("Each detector may be listed once.", code="invalid_detectors")


def detectors_default() -> list[str]:
    """What a new camera detects unless told otherwise: what a user expects to see working."""
    return ["motion", "person"]


class Camera(models.Model):
    class Status(models.TextChoices):
        CONNECTING = "connecting", "Connecting"
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="cameras")
    public_id = models.CharField(
        max_length=32,
        unique=True,
        default=public_id_new,
        editable=False,
        help_text="The camera_id used in URLs, the API, the WebSocket path and FrameData.",
    )
    name = models.CharField(max_length=120)
    source = models.CharField(
        max_length=1000,
        validators=[validate_camera_source],
        help_text=(
            "rtsp://…, http(s)://… (MJPEG), a video file path (looped), device:N (local camera), "
            "push: (frames arrive through the ingest API) or demo: (a synthetic scene)."
        ),
    )
    enabled = models.BooleanField(default=True)
    target_fps = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    max_width = models.PositiveIntegerField(
        default=640,
        validators=[MinValueValidator(64), MaxValueValidator(3840)],
        help_text="Wider frames are scaled down to this width before detection and encoding.",
    )
    jpeg_quality = models.PositiveSmallIntegerField(
        default=75, validators=[MinValueValidator(10), MaxValueValidator(95)]
    )
    detectors = models.JSONField(
        default=detectors_default,
        blank=True,
        validators=[validate_detector_names],
        help_text='Detector names, e.g. ["motion", "person"]. Available: motion, person, face, onnx.',
    )
    min_confidence = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    onnx_model = models.CharField(
        max_length=500, blank=True, help_text="Path of a YOLO-format ONNX model (detector onnx)."
    )
    onnx_labels = models.CharField(
        max_length=500, blank=True, help_text="Path of its label file, one class name a line."
    )
    zones = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_polygons],
        help_text=(
            'Named areas, e.g. [{"name": "Driveway", "points": [[0.1, 0.6], [0.5, 0.6], '
            "[0.5, 1], [0.1, 1]]}], points in fractions of the frame. Events record the zones "
            "their object entered."
        ),
    )
    motion_masks = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_polygons],
        help_text="Areas the motion detector ignores (a tree, an on-screen clock), as zones.",
    )

    # Written by the capture workers, at most about once a second (never per frame).
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CONNECTING)
    last_error = models.TextField(blank=True)
    last_frame_at = models.DateTimeField(null=True, blank=True)
    measured_fps = models.FloatField(default=0.0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["enabled"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_push(self) -> bool:
        return self.source.strip().lower().startswith("push:")

    @property
    def stream_path(self) -> str:
        return f"/ws/stream/{self.public_id}"
