"""Pages: organizations with their members, and the API-token page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from organizations.models import (
    SYSTEM_PROMPT_MAX_LENGTH,
    Membership,
    Organization,
    time_zone_names,
)
from organizations.permissions import (
    MINIMUM_ROLE,
    Action,
    ActionForbidden,
    role_allows,
    role_may_assign,
    role_of,
    roles_by_organization,
)
from organizations.selectors import (
    api_tokens_for_user,
    organization_get_for_user,
    organization_members_strongest_first,
    organizations_for_user,
)
from organizations.services import (
    MembershipConflict,
    api_token_regenerate,
    api_token_revoke,
    member_add,
    member_remove,
    member_role_change,
    organization_delete,
    organization_update,
)


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    # A freshly made token is passed through the session once, then forgotten.
    new_token = request.session.pop("new_api_token", None)
    return render(
        request,
        "organizations/tokens.html",
        {"tokens": api_tokens_for_user(user=request.user), "new_token": new_token},
    )


@login_required
@require_POST
def token_regenerate(request: HttpRequest) -> HttpResponse:
    _, raw = api_token_regenerate(user=request.user)
    request.session["new_api_token"] = raw
    return redirect("tokens")


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    api_token_revoke(user=request.user, token_id=token_id)
    return redirect("tokens")


@login_required
def organizations_page(request: HttpRequest) -> HttpResponse:
    organizations = organizations_for_user(user=request.user).prefetch_related("memberships__user")
    roles = roles_by_organization(user=request.user)
    rows = [(organization, roles.get(organization.pk)) for organization in organizations]
    return render(request, "organizations/list.html", {"rows": rows})


def _organization_or_404(request: HttpRequest, organization_id: int) -> Organization:
    organization = organization_get_for_user(user=request.user, organization_id=organization_id)
    if organization is None:
        raise Http404("No such organization.")
    return organization


@login_required
def organization_page(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = _organization_or_404(request, organization_id)
    role = role_of(user=request.user, organization=organization)
    members = [
        (membership, role_may_assign(role, membership.role))
        for membership in organization_members_strongest_first(organization=organization)
    ]
    assignable = [value for value, _ in Membership.Role.choices if role_may_assign(role, value)]
    return render(
        request,
        "organizations/detail.html",
        {
            "organization": organization,
            "role": role,
            "members": members,
            "assignable_roles": [
                (value, label) for value, label in Membership.Role.choices if value in assignable
            ],
            "can_manage_members": role_allows(role, Action.MANAGE_MEMBERS),
            "can_edit": role_allows(role, Action.EDIT_ORGANIZATION),
            "can_delete": role_allows(role, Action.DELETE_ORGANIZATION),
            "permission_table": [(action.value, MINIMUM_ROLE[action]) for action in Action],
            "server_time_zone": settings.TIME_ZONE,
            "time_zones": time_zone_names(),
            "system_prompt_max_length": SYSTEM_PROMPT_MAX_LENGTH,
        },
    )


def _run_and_report(request: HttpRequest, work, success: str) -> None:
    """Run a membership or settings change for a page and say how it went (a flash message)."""
    try:
        work()
    except ActionForbidden as refusal:
        messages.error(request, refusal.message)
    except MembershipConflict as conflict:
        messages.error(request, conflict.message)
    except ValidationError as invalid:
        messages.error(request, " ".join(invalid.messages))
    else:
        messages.success(request, success)


@login_required
@require_POST
def member_add_view(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = _organization_or_404(request, organization_id)
    identifier = request.POST.get("user", "")[:254]
    role = request.POST.get("role", "")[:20]
    _run_and_report(
        request,
        lambda: member_add(
            actor=request.user, organization=organization, identifier=identifier, role=role
        ),
        f"Added {identifier} as {role}.",
    )
    return redirect("organization", organization_id=organization.pk)


@login_required
@require_POST
def member_role_view(request: HttpRequest, organization_id: int, user_id: int) -> HttpResponse:
    organization = _organization_or_404(request, organization_id)
    role = request.POST.get("role", "")[:20]

    def change() -> None:
        if (
            member_role_change(
                actor=request.user, organization=organization, user_id=user_id, role=role
            )
            is None
        ):
            raise Http404("No such member.")

    _run_and_report(request, change, f"The role is now {role}.")
    return redirect("organization", organization_id=organization.pk)


@login_required
@require_POST
def member_remove_view(request: HttpRequest, organization_id: int, user_id: int) -> HttpResponse:
    organization = _organization_or_404(request, organization_id)

    def remove() -> None:
        if not member_remove(actor=request.user, organization=organization, user_id=user_id):
            raise Http404("No such member.")

    _run_and_report(request, remove, "The member was removed.")
    if (
        user_id == request.user.pk
        and organization_get_for_user(user=request.user, organization_id=organization.pk) is None
    ):
        return redirect("organizations")  # they left it
    return redirect("organization", organization_id=organization.pk)


@login_required
@require_POST
def organization_settings(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = _organization_or_404(request, organization_id)
    fields: dict[str, object] = {
        "name": request.POST.get("name", "")[:120],
        "server_host_url": request.POST.get("server_host_url", "")[:255],
    }
    # Sent by the settings form; a form without them (an older page) leaves them as they are.
    # One character over the limit is kept so that the model refuses it instead of cutting it.
    for name, limit in (("time_zone", 64), ("system_prompt", SYSTEM_PROMPT_MAX_LENGTH)):
        if name in request.POST:
            fields[name] = request.POST[name][: limit + 1]
    ws_port = request.POST.get("ws_port", "").strip()
    if not ws_port.isascii() or not ws_port.isdigit() or len(ws_port) > 5:
        messages.error(request, "The WebSocket port must be a number from 1 to 65535.")
        return redirect("organization", organization_id=organization.pk)
    fields["ws_port"] = int(ws_port)
    _run_and_report(
        request,
        lambda: organization_update(actor=request.user, organization=organization, **fields),
        "Settings saved.",
    )
    return redirect("organization", organization_id=organization.pk)


@login_required
@require_POST
def organization_delete_view(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = _organization_or_404(request, organization_id)
    if request.POST.get("confirm_name", "") != organization.name:
        messages.error(request, "Type the organization's name exactly to delete it.")
        return redirect("organization", organization_id=organization.pk)
    name = organization.name
    try:
        organization_delete(actor=request.user, organization=organization)
    except ActionForbidden as refusal:
        messages.error(request, refusal.message)
        return redirect("organization", organization_id=organization.pk)
    messages.success(request, f"Deleted {name}.")
    return redirect("organizations")
