"""Admin for cameras: configuration, live status, and a one-frame test of the source."""

from __future__ import annotations

import concurrent.futures

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from cameras.models import Camera
from cameras.services import camera_delete, camera_detectors_check

GRAB_TIMEOUT_SECONDS = 12.0
GRAB_MAX_CAMERAS = 5
# A few threads shared by every admin request: a hung source cannot pile threads up.
_grab_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="camera-grab")


def grab_one_frame(source: str) -> tuple[int, int]:
    """Open `source`, read one frame, close it; (width, height) or SourceError/RuntimeError."""
    from cameras.vision.sources import open_source

    frame_source = open_source(source, read_timeout=5.0)
    try:
        frame = frame_source.read()
    finally:
        frame_source.close()
    if frame is None:
        raise RuntimeError("the source opened but gave no frame within its timeout")
    height, width = frame.shape[:2]
    return width, height


class CameraAdminForm(forms.ModelForm):
    def _post_clean(self):
        super()._post_clean()
        # The same detector check as the API (e.g. onnx without a readable model file).
        if not self.errors:
            try:
                camera_detectors_check(self.instance)
            except ValidationError as exc:
                self._update_errors(exc)


@admin.register(Camera)
class CameraAdmin(admin.ModelAdmin):
    form = CameraAdminForm
    list_display = [
        "name",
        "organization",
        "public_id",
        "source",
        "enabled",
        "status",
        "last_frame_at",
        "measured_fps",
    ]
    list_filter = ["status", "enabled", "organization"]
    search_fields = ["name", "public_id", "source", "organization__name"]
    list_select_related = ["organization"]
    readonly_fields = [
        "public_id",
        "status",
        "last_error",
        "last_frame_at",
        "measured_fps",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["organization", "name", "public_id", "source", "enabled"]}),
        ("Processing", {"fields": ["target_fps", "max_width", "jpeg_quality"]}),
        ("Detection", {"fields": ["detectors", "min_confidence", "onnx_model", "onnx_labels"]}),
        (
            "Live status (written by the capture workers)",
            {"fields": ["status", "last_error", "last_frame_at", "measured_fps"]},
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["grab_test_frame"]

    # Through the service, so the events' snapshot files go with the camera.
    def delete_model(self, request, obj):
        camera_delete(camera=obj)

    def delete_queryset(self, request, queryset):
        for camera in queryset:
            camera_delete(camera=camera)

    @admin.action(description="Grab one test frame from the source")
    def grab_test_frame(self, request, queryset):
        cameras = list(queryset[: GRAB_MAX_CAMERAS + 1])
        if len(cameras) > GRAB_MAX_CAMERAS:
            self.message_user(
                request, f"Select at most {GRAB_MAX_CAMERAS} cameras to test.", messages.WARNING
            )
            return
        for camera in cameras:
            if camera.is_push:
                self.message_user(
                    request,
                    f"{camera}: a push: camera has no source to read; frames arrive through "
                    "the ingest API.",
                    messages.INFO,
                )
                continue
            # Off the request thread with a bound: a dead RTSP server must not hang the admin.
            future = _grab_pool.submit(grab_one_frame, camera.source)
            try:
                width, height = future.result(timeout=GRAB_TIMEOUT_SECONDS)
            except concurrent.futures.TimeoutError:
                self.message_user(
                    request,
                    f"{camera}: no frame within {GRAB_TIMEOUT_SECONDS:g} s.",
                    messages.ERROR,
                )
            except Exception as exc:
                self.message_user(request, f"{camera}: {exc}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{camera}: got a {width}x{height} frame.", messages.SUCCESS
                )
