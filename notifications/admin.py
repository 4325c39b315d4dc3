"""Admin for alert rules, webhooks, alerts and the webhook delivery log.

As in events/admin.py: superusers run the installation and see and change every organization's
rules and webhooks; other staff see only their own organizations', read-only, and never a
webhook's secret (the pages and the API are where organization admins manage them). Alerts and
deliveries are the recorder's and the worker's: shown, never edited; a superuser may "retry
now" deliveries.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from events.admin import OwnOrganizationsOnly
from notifications.models import ALERT_FILTER_FIELDS, Alert, AlertRule, Webhook, WebhookDelivery
from notifications.serializers import (
    classes_clean,
    quiet_hours_check,
    webhook_url_validate,
    zones_clean,
)
from notifications.services import webhook_deliveries_retry
from organizations.selectors import organizations_for_user


class AlertFilterAdminForm(forms.ModelForm):
    """The API's checks: the organization's own cameras, classes, zones, quiet hours, URL."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        organization = cleaned.get("organization")
        cameras = cleaned.get("cameras")
        if organization is not None and cameras is not None:
            foreign = [
                camera.name for camera in cameras if camera.organization_id != organization.pk
            ]
            if foreign:
                self.add_error(
                    "cameras", f"Not cameras of {organization.name}: {', '.join(foreign)}."
                )
        for name, check in (("classes", classes_clean), ("zones", zones_clean)):
            value = cleaned.get(name)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                self.add_error(name, 'A list of names, e.g. ["person"].')
                continue
            try:
                cleaned[name] = check(value)
            except ValidationError as invalid:
                self.add_error(name, invalid)
        try:
            quiet_hours_check(cleaned.get("quiet_hours_start"), cleaned.get("quiet_hours_end"))
        except ValidationError as invalid:
            self.add_error(None, invalid)
        if "url" in self.fields and cleaned.get("url"):
            try:
                webhook_url_validate(cleaned["url"])
            except ValidationError as invalid:
                self.add_error("url", invalid)
        return cleaned


FILTER_FIELDSET = (
    "Which events",
    {"fields": [name for name in ALERT_FILTER_FIELDS if name not in ("name", "enabled")]},
)


class AlertFilterAdmin(OwnOrganizationsOnly):
    form = AlertFilterAdminForm
    list_filter = ["enabled", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "organization__name"]
    list_select_related = ["organization"]
    filter_horizontal = ["cameras"]
    readonly_fields = ["created_at", "updated_at"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "cameras" and not request.user.is_superuser:
            kwargs["queryset"] = db_field.remote_field.model.objects.filter(
                organization__in=organizations_for_user(user=request.user)
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(AlertRule)
class AlertRuleAdmin(AlertFilterAdmin):
    list_display = ["name", "organization", "enabled", "notify_browser", "notify_mqtt"]
    fieldsets = [
        (None, {"fields": ["organization", "name", "enabled", "notify_browser", "notify_mqtt"]}),
        FILTER_FIELDSET,
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(Webhook)
class WebhookAdmin(AlertFilterAdmin):
    list_display = ["name", "organization", "enabled", "url_host"]
    search_fields = ["name", "url", "organization__name"]

    def get_fieldsets(self, request: HttpRequest, obj=None):
        main = ["organization", "name", "enabled", "url", "include_snapshot"]
        if request.user.is_superuser:
            main.append("secret")
        return [
            (None, {"fields": main}),
            FILTER_FIELDSET,
            ("Times", {"fields": ["created_at", "updated_at"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        # Chosen (or generated) once; a new one comes from "Rotate" on the webhook's page or
        # the API, so that nobody changes it here by mistake.
        return [*readonly, "secret"] if obj is not None else readonly

    @admin.display(description="URL host")
    def url_host(self, webhook: Webhook) -> str:
        return webhook.url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]


class ReadOnly(OwnOrganizationsOnly):
    """Shown, never added or edited (by anybody)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnly):
    list_display = ["id", "created_at", "label", "camera", "rule", "webhook", "organization"]
    list_filter = [
        "label",
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("camera", admin.RelatedOnlyFieldListFilter),
        ("rule", admin.RelatedOnlyFieldListFilter),
        ("webhook", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["label", "camera__name", "rule__name", "webhook__name"]
    date_hierarchy = "created_at"
    list_select_related = ["camera", "rule", "webhook", "organization"]
    raw_id_fields = ["event"]
    ordering = ["-created_at"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnly):
    list_display = [
        "created_at",
        "webhook",
        "kind",
        "status",
        "attempts",
        "response_status",
        "last_attempt_at",
        "next_attempt_at",
        "last_error",
    ]
    list_filter = [
        "status",
        "kind",
        ("webhook", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["webhook__name", "last_error"]
    date_hierarchy = "created_at"
    list_select_related = ["webhook", "webhook__organization"]
    ordering = ["-created_at"]
    actions = ["retry_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Deliveries have no organization of their own: their webhook's.
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(webhook__organization__in=organizations_for_user(user=request.user))

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = webhook_deliveries_retry(deliveries=queryset)
        messages.success(request, f"{count} deliveries will be sent again at once.")
