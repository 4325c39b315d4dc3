"""Admin for organizations, memberships and API tokens: the installation's operators' tool.

People manage their own organizations' members on /organizations/<id>/ and their tokens on
/account/tokens/, with the roles of organizations.permissions. Here only superusers change
anything: a staff flag alone must not let someone make themselves an owner or read tokens.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from organizations.models import ApiToken, Membership, Organization
from organizations.services import api_token_create


class SuperuserOnlyAdmin(admin.ModelAdmin):
    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(SuperuserOnlyAdmin):
    list_display = ["name", "slug", "server_host_url", "ws_port", "time_zone", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(SuperuserOnlyAdmin):
    list_display = ["user", "organization", "role", "joined_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "organization__name"]

    def delete_queryset(self, request, queryset):
        # One by one: whoever listens for removed memberships (closing streams) hears each.
        for membership in queryset:
            membership.delete()


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(SuperuserOnlyAdmin):
    """Adding a token generates it and shows it once, as /account/tokens/ does; only its
    digest is stored, so it can never be shown again."""

    list_display = ["prefix", "user", "name", "created_at", "last_used_at"]
    search_fields = ["user__username", "prefix", "name"]
    autocomplete_fields = ["user"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name"]
        return ["user", "name", "prefix", "created_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["user", "prefix", "created_at", "last_used_at"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        token, raw = api_token_create(user=obj.user, name=obj.name)
        # The admin goes on with `obj` (its log entry, the redirect): make it the saved token.
        obj.pk, obj.prefix, obj.digest, obj.created_at = (
            token.pk,
            token.prefix,
            token.digest,
            token.created_at,
        )
        obj._state.adding = False
        self.message_user(
            request,
            f"The new token for {token.user}: {raw} (copy it now: it is not shown again).",
            messages.WARNING,
        )

    def delete_queryset(self, request, queryset):
        # One by one: whoever listens for revoked tokens (closing their sockets) hears each.
        for token in queryset:
            token.delete()
