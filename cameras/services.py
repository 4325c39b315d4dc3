"""Writes about cameras: configuration (API, admin) and the live status the workers report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from cameras.models import Camera
from organizations.models import Organization
from organizations.services import demo_organization_create

EDITABLE_FIELDS = (
    "name",
    "source",
    "enabled",
    "target_fps",
    "max_width",
    "jpeg_quality",
    "detectors",
    "min_confidence",
    "onnx_model",
    "onnx_labels",
    "zones",
    "motion_masks",
)


def camera_detectors_check(camera: Camera) -> None:
    """Build the detectors once, so that e.g. onnx without a readable model fails at save time."""
    from cameras.vision.detectors import DetectorConfigError, build_detectors

    try:
        build_detectors(
            list(camera.detectors or []),
            min_confidence=camera.min_confidence,
            onnx_model=camera.onnx_model or None,
            onnx_labels=camera.onnx_labels or None,
        )
    except DetectorConfigError as exc:
        raise ValidationError({"detectors": [str(exc)]}) from None


def camera_full_clean(camera: Camera) -> None:
    camera.full_clean()
    camera_detectors_check(camera)


@transaction.atomic
def camera_create(*, organization: Organization, name: str, source: str, **fields: Any) -> Camera:
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown camera field(s): {', '.join(sorted(unknown))}.")
    camera = Camera(organization=organization, name=name, source=source.strip(), **fields)
    camera_full_clean(camera)
    camera.save()
    return camera


@transaction.atomic
def camera_update(*, camera: Camera, **fields: Any) -> Camera:
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown camera field(s): {', '.join(sorted(unknown))}.")
    for name, value in fields.items():
        setattr(camera, name, value.strip() if name == "source" else value)
    camera_full_clean(camera)
    update_fields = [*fields, "updated_at"]
    # A changed source starts over: the status of the old one says nothing about the new one.
    if "source" in fields or fields.get("enabled") is True:
        camera.status, camera.last_error = Camera.Status.CONNECTING, ""
        update_fields += ["status", "last_error"]
    # Only what changed: the live status columns belong to the capture workers meanwhile.
    camera.save(update_fields=update_fields)
    return camera


def camera_delete(*, camera: Camera) -> None:
    """Delete the camera with what other apps keep of it: their `pre_delete` receivers (events:
    its events and their snapshot files) run first, and the rows cascade."""
    camera.delete()


@transaction.atomic
def demo_setup(*, password: str) -> tuple[Organization, AbstractBaseUser]:
    """The demo organization with its owner `demo` (the given password) and its cameras: live
    video with real detections on a fresh install, and a camera a browser webcam can publish
    to (from /cameras/<id>/publish). Both take the model's default detectors."""
    organization, user = demo_organization_create(password=password)
    camera_create(organization=organization, name="Demo camera", source="demo:", target_fps=15)
    camera_create(organization=organization, name="Browser webcam", source="push:")
    return organization, user


def camera_status_update(
    *,
    camera_pk: int,
    status: str,
    last_error: str | None = None,
    last_frame_at: datetime | None = None,
    measured_fps: float | None = None,
) -> None:
    """Record what a worker or the ingest path observed. Callers limit this to ~once a second."""
    fields: dict[str, Any] = {"status": status}
    if last_error is not None:
        fields["last_error"] = last_error[:2000]
    if last_frame_at is not None:
        fields["last_frame_at"] = last_frame_at
    if measured_fps is not None:
        fields["measured_fps"] = round(measured_fps, 2)
    # update(), not save(): it leaves the configuration (and updated_at) alone.
    Camera.objects.filter(pk=camera_pk).update(**fields)


def cameras_mark_offline(*, camera_pks: list[int], reason: str) -> None:
    Camera.objects.filter(pk__in=camera_pks).update(
        status=Camera.Status.OFFLINE, last_error=reason, measured_fps=0.0
    )


def push_cameras_mark_stale(*, offline_after_seconds: float) -> int:
    """push: cameras have no worker watching them; mark those whose frames stopped offline."""
    cutoff = timezone.now() - timedelta(seconds=offline_after_seconds)
    return Camera.objects.filter(
        enabled=True,
        source__startswith="push:",
        status=Camera.Status.ONLINE,
        last_frame_at__lt=cutoff,
    ).update(
        status=Camera.Status.OFFLINE,
        last_error=f"No frame has been pushed for {offline_after_seconds:g} s.",
        measured_fps=0.0,
    )
