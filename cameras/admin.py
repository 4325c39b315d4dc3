"""Admin for cameras: configuration, live status, and a one-frame test of the source."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery, Value

from cameras.forms import CameraModelForm
from cameras.models import Camera
from cameras.selectors import camera_source_for_role, cameras_for_user
from cameras.services import camera_delete
from cameras.source_test import SourceTestFailed, source_test_frame
from organizations.models import Membership
from organizations.permissions import Action, organizations_allowing, role_allows

GRAB_MAX_CAMERAS = 5


@admin.register(Camera)
class CameraAdmin(admin.ModelAdmin):
    # Detectors as checkboxes, and the same checks as the camera pages and the API.
    form = CameraModelForm
    list_display = [
        "name",
        "organization",
        "public_id",
        "source_shown",
        "enabled",
        "status",
        "last_frame_at",
        "measured_fps",
    ]
    list_filter = ["status", "enabled", ("organization", admin.RelatedOnlyFieldListFilter)]
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
        # Drawn on the camera's page; here as JSON for the few who prefer typing numbers.
        ("Zones and masks", {"fields": ["zones", "motion_masks"], "classes": ["collapse"]}),
        (
            "Live status (written by the capture workers)",
            {"fields": ["status", "last_error", "last_frame_at", "measured_fps"]},
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["grab_test_frame"]

    # Roles hold here as everywhere (organizations.permissions): staff see the cameras of their
    # organizations, change them only where they are admins or owners, and see sources with
    # credentials only there. Superusers run the installation and may do everything.
    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset.annotate(member_role=Value(Membership.Role.OWNER))
        role = Membership.objects.filter(organization=OuterRef("organization"), user=request.user)
        return queryset.filter(pk__in=cameras_for_user(user=request.user).values("pk")).annotate(
            member_role=Subquery(role.values("role")[:1])
        )

    def _may_manage(self, request, camera: Camera | None) -> bool:
        if request.user.is_superuser:
            return True
        if camera is None:
            return organizations_allowing(user=request.user, action=Action.MANAGE_CAMERAS).exists()
        return role_allows(getattr(camera, "member_role", None), Action.MANAGE_CAMERAS)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self._may_manage(request, None)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (
            obj is None or self._may_manage(request, obj)
        )

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (
            obj is None or self._may_manage(request, obj)
        )

    def get_search_fields(self, request):
        # Searching by source would reveal a masked password one guess at a time.
        fields = super().get_search_fields(request)
        return fields if request.user.is_superuser else [f for f in fields if f != "source"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            kwargs["queryset"] = organizations_allowing(
                user=request.user, action=Action.MANAGE_CAMERAS
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or role_allows(getattr(obj, "member_role", None), Action.SEE_CAMERA_SECRETS):
            return fieldsets
        # Read-only for this user: the masked source instead of the field itself.
        return [
            (
                name,
                {
                    **options,
                    "fields": [
                        "source_shown" if field == "source" else field
                        for field in options["fields"]
                    ],
                },
            )
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "source_shown"]

    @admin.display(description="source")
    def source_shown(self, camera: Camera) -> str:
        return camera_source_for_role(camera, getattr(camera, "member_role", None))

    def delete_queryset(self, request, queryset):
        cameras = list(queryset)
        if not all(self._may_manage(request, camera) for camera in cameras):
            raise PermissionDenied(
                "Only admins and owners of its organization may delete a camera."
            )
        for camera in cameras:
            camera_delete(camera=camera)

    @admin.action(description="Grab one test frame from the source")
    def grab_test_frame(self, request, queryset):
        cameras = list(queryset[: GRAB_MAX_CAMERAS + 1])
        if len(cameras) > GRAB_MAX_CAMERAS:
            self.message_user(
                request, f"Select at most {GRAB_MAX_CAMERAS} cameras to test.", messages.WARNING
            )
            return
        refused = [camera for camera in cameras if not self._may_manage(request, camera)]
        if refused:
            names = ", ".join(str(camera) for camera in refused)
            self.message_user(
                request,
                f"Only admins and owners of its organization may test a camera's source: {names}.",
                messages.ERROR,
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
            # Read on the test pool, waited for at most CAMERA_SOURCE_TEST_TIMEOUT_SECONDS: a
            # dead RTSP server must not hang the admin.
            try:
                frame = source_test_frame(camera.source)
            except SourceTestFailed as failure:
                self.message_user(request, f"{camera}: {failure.message}", messages.ERROR)
            else:
                height, width = frame.shape[:2]
                self.message_user(
                    request, f"{camera}: got a {width}x{height} frame.", messages.SUCCESS
                )
