"""Admin for events and sessions: filters, search, and snapshot previews.

Previews load through the admin's own snapshot view, which asks what the admin asks for the row
(view permission on events), not organization membership: a superuser who is not a member of
the organization sees the image as well as the row. The snapshot API stays scoped to members.

Superusers run the installation and see every organization's events. Other staff see only the
events and sessions of their own organizations, read-only (they are the recorder's, not
anybody's to edit), and the filters name only organizations and cameras they can see.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest
from django.urls import path, reverse
from django.utils.html import format_html

import project.converters  # noqa: F401  (registers <id:…> for the snapshot URL)
from events.models import CameraSession, DetectionEvent, EventZone
from events.services import events_delete
from organizations.selectors import organizations_for_user


class OwnOrganizationsOnly(admin.ModelAdmin):
    """Every organization's rows for superusers; for other staff their organizations', to read."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(organization__in=organizations_for_user(user=request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


class EventZoneInline(admin.TabularInline):
    """The zones the event's object entered: the recorder's, shown, never edited here."""

    model = EventZone
    fields = ["zone", "entered_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(DetectionEvent)
class DetectionEventAdmin(OwnOrganizationsOnly):
    list_display = [
        "id",
        "thumbnail",
        "label",
        "track_id",
        "camera",
        "organization",
        "started_at",
        "ended_at",
        "peak_confidence",
        "frames_seen",
    ]
    list_display_links = ["id", "thumbnail"]
    list_filter = [
        "label",
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("camera", admin.RelatedOnlyFieldListFilter),
        "started_at",
    ]
    search_fields = ["label", "camera__name", "camera__public_id", "organization__name"]
    date_hierarchy = "started_at"
    list_select_related = ["camera", "organization"]
    raw_id_fields = ["camera", "session"]
    readonly_fields = ["preview", "snapshot"]
    inlines = [EventZoneInline]
    ordering = ["-started_at"]

    # Through the service, so the event's snapshot and clip files go with it.
    def delete_model(self, request: HttpRequest, obj: DetectionEvent) -> None:
        events_delete(events=DetectionEvent.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        events_delete(events=queryset)

    def get_urls(self):
        snapshot = path(
            "<id:event_id>/snapshot.jpg",
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
class CameraSessionAdmin(OwnOrganizationsOnly):
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
    list_filter = [
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("camera", admin.RelatedOnlyFieldListFilter),
        "started_at",
    ]
    search_fields = ["camera__name", "camera__public_id", "organization__name"]
    date_hierarchy = "started_at"
    list_select_related = ["camera", "organization"]
    raw_id_fields = ["camera"]
    ordering = ["-started_at"]
