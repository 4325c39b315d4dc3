"""Admin for events and sessions: filters, search, and snapshot previews.

Previews load through the scoped snapshot API (staff are usually members of the organization;
a superuser outside it sees the row but the image answers 404).
"""

from __future__ import annotations

from django.contrib import admin
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

    @admin.display(description="Snapshot")
    def thumbnail(self, event: DetectionEvent) -> str:
        if not event.snapshot:
            return "—"
        return format_html(
            '<img src="/api/v1/events/{}/snapshot" alt="" loading="lazy" '
            'style="height:48px;border-radius:4px">',
            event.pk,
        )

    @admin.display(description="Snapshot preview")
    def preview(self, event: DetectionEvent) -> str:
        if not event.snapshot:
            return "No snapshot stored."
        return format_html(
            '<img src="/api/v1/events/{}/snapshot" alt="" style="max-width:640px;width:100%">',
            event.pk,
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
