"""Reads about cameras. `cameras_for_user` is the one place camera isolation is decided:
pages, the API, frame ingest and the WebSocket consumer all go through it."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from cameras.models import Camera
from organizations.selectors import organizations_for_user


def cameras_for_user(*, user: AbstractBaseUser | AnonymousUser | None) -> QuerySet[Camera]:
    if user is None or not user.is_authenticated:
        return Camera.objects.none()
    return Camera.objects.filter(organization__in=organizations_for_user(user=user))


def camera_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser | None, public_id: str
) -> Camera | None:
    return (
        cameras_for_user(user=user)
        .select_related("organization")
        .filter(public_id=public_id)
        .first()
    )


@dataclass(frozen=True)
class CameraConfig:
    """What a capture worker needs, detached from the ORM so it can live in a thread.

    Two configs compare equal exactly when a running worker can keep going unchanged.
    """

    pk: int
    public_id: str
    source: str
    target_fps: int
    max_width: int
    jpeg_quality: int
    detectors: tuple[str, ...]
    min_confidence: float
    onnx_model: str
    onnx_labels: str

    @classmethod
    def of(cls, camera: Camera) -> CameraConfig:
        return cls(
            pk=camera.pk,
            public_id=camera.public_id,
            source=camera.source,
            target_fps=camera.target_fps,
            max_width=camera.max_width,
            jpeg_quality=camera.jpeg_quality,
            detectors=tuple(camera.detectors or ()),
            min_confidence=camera.min_confidence,
            onnx_model=camera.onnx_model,
            onnx_labels=camera.onnx_labels,
        )

    @property
    def is_push(self) -> bool:
        return self.source.strip().lower().startswith("push:")


def camera_configs_enabled(*, public_ids: list[str] | None = None) -> list[CameraConfig]:
    cameras = Camera.objects.filter(enabled=True)
    if public_ids:
        cameras = cameras.filter(public_id__in=public_ids)
    return [CameraConfig.of(camera) for camera in cameras]
