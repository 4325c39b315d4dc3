"""Admin for events and sessions: filters, search, and snapshot previews.

Previews load through the admin's own snapshot view, which asks what the admin asks for the row
(view permission on events), not organization membership: a superuser who is not a member of
the organization sees the image as well as the row. The snapshot API stays scoped to members.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.urls import path, reverse
from django.utils.html import format_html

from events.models import CameraSession, DetectionEvent


@admin.register(DetectionEvent)
class DetectionEventAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "thumbnail",
        "label",
        "camera",
        "organization",
        "started_at",
        "ended_at",
        "peak_confidence",
        "frames_seen",
    ]
    list_display_links = ["id", "thumbnail"]
    list_filter = ["label", "organization", "camera", "started_at"]
    search_fields = ["label", "camera__name", "camera__public_id", "organization__name"]
    date_hierarchy = "started_at"
    list_select_related = ["camera", "organization"]
    raw_id_fields = ["camera", "session"]
    readonly_fields = ["preview", "snapshot"]
    ordering = ["-started_at"]

    def get_urls(self):
        snapshot = path(
            "<int:event_id>/snapshot.jpg",
            self.admin_site.admin_view(self.snapshot_view),
            name="events_detectionevent_snapshot",
        )
        return [snapshot, *super().get_urls()]

    def snapshot_view(self, request: HttpRequest, event_id: int) -> FileResponse:
        # The rows this admin shows, so the image follows whatever the changelist allows.
        event = self.get_queryset(request).filter(pk=event_id).first()
        if (
            event is None
            or not self.has_view_permission(request, event)
            or not event.snapshot
            or not default_storage.exists(event.snapshot.name)
        ):
            raise Http404("No snapshot.")
        response = FileResponse(
            default_storage.open(event.snapshot.name), content_type="image/jpeg"
        )
        response["Cache-Control"] = "private, no-cache"
        return response

    def _snapshot_url(self, event: DetectionEvent) -> str:
        return reverse(f"{self.admin_site.name}:events_detectionevent_snapshot", args=[event.pk])

    @admin.display(description="Snapshot")
    def thumbnail(self, event: DetectionEvent) -> str:
        if not event.snapshot:
            return "—"
        return format_html(
            '<img src="{}" alt="" loading="lazy" style="height:48px;border-radius:4px">',
            self._snapshot_url(event),
        )

    @admin.display(description="Snapshot preview")
    def preview(self, event: DetectionEvent) -> str:
        if not event.snapshot:
            return "No snapshot stored."
        return format_html(
            '<img src="{}" alt="" style="max-width:640px;width:100%">', self._snapshot_url(event)
        )


@admin.register(CameraSession)
class CameraSessionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "camera",
        "organization",
        "started_at",
        "ended_at",
        "frames_processed",
        "measured_fps",
        "counts",
    ]
    list_filter = ["organization", "camera", "started_at"]
    search_fields = ["camera__name", "camera__public_id", "organization__name"]
    date_hierarchy = "started_at"
    list_select_related = ["camera", "organization"]
    raw_id_fields = ["camera"]
    ordering = ["-started_at"]
