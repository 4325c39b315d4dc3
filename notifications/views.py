"""Pages for alert rules and webhooks: the list, their forms, a webhook's delivery log with
"Send test" and "Rotate". Who may do what is the API's (notifications/serializers.py): every
member reads, admins and owners change; outside the organization it is a 404."""

from __future__ import annotations

import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from cameras.source_policy import source_masked
from notifications.forms import AlertRuleForm, WebhookForm
from notifications.models import AlertRule, Webhook
from notifications.selectors import (
    alert_source_get_for_user,
    deliveries_for_webhook,
    rules_for_organization,
    webhooks_for_organization,
)
from notifications.serializers import may_see_secrets
from notifications.services import (
    WebhookTestRateLimited,
    alert_filter_create,
    alert_filter_delete,
    alert_filter_update,
    webhook_secret_rotate,
    webhook_test_send,
)
from organizations.permissions import (
    Action,
    ActionForbidden,
    organizations_allowing,
    permission_require,
    role_allows,
    roles_by_organization,
)
from organizations.selectors import organizations_for_user
from project.query_params import ID_MAX

MANAGE = Action.EDIT_ORGANIZATION
DELIVERIES_SHOWN = 50

KINDS = {
    "rule": {"model": AlertRule, "form": AlertRuleForm, "title": "alert rule"},
    "webhook": {"model": Webhook, "form": WebhookForm, "title": "webhook"},
}


def filters_in_words(rule: AlertRule | Webhook) -> str:
    """What the rule matches, as a sentence: "person or car on Front door, in Driveway, …"."""
    classes = " or ".join(rule.classes) if rule.classes else "anything"
    cameras = sorted(camera.name for camera in rule.cameras.all())
    where = f"on {', '.join(cameras)}" if cameras else "on any camera"
    parts = [f"{classes} {where}"]
    if rule.zones:
        parts.append(f"in {' or '.join(rule.zones)}")
    if rule.min_confidence:
        parts.append(f"at {rule.min_confidence:.0%} confidence or more")
    if rule.min_duration_seconds:
        parts.append(f"in view {rule.min_duration_seconds:g} s or more")
    if rule.quiet_hours_start is not None and rule.quiet_hours_end is not None:
        parts.append(f"quiet {rule.quiet_hours_start:%H:%M}–{rule.quiet_hours_end:%H:%M}")
    parts.append(f"at most one alert per camera and class every {rule.cooldown_seconds} s")
    return ", ".join(parts) + "."


def _source_or_404(request: HttpRequest, model, pk: int):
    found = alert_source_get_for_user(model=model, pk=pk, user=request.user)
    if found is None:
        raise Http404("No such rule or webhook among your organizations'.")
    return found


def _manage_check(request: HttpRequest, rule) -> None:
    try:
        permission_require(
            user=request.user, organization=rule.organization, action=MANAGE, role=rule.member_role
        )
    except ActionForbidden as refusal:
        raise PermissionDenied(refusal.message) from None


@login_required
def notifications_page(request: HttpRequest) -> HttpResponse:
    roles = roles_by_organization(user=request.user)
    organizations = [
        {
            "organization": organization,
            "can_manage": role_allows(roles.get(organization.pk), MANAGE),
            "rules": [
                (rule, filters_in_words(rule))
                for rule in rules_for_organization(organization=organization)
            ],
            "webhooks": [
                (webhook, filters_in_words(webhook))
                for webhook in webhooks_for_organization(organization=organization)
            ],
        }
        for organization in organizations_for_user(user=request.user).order_by("name", "id")
    ]
    return render(request, "notifications/list.html", {"organizations": organizations})


def _organization_to_add_in(request: HttpRequest, kind: str):
    """The organization a new rule or webhook goes to: `?organization=`, or the one the user
    manages; None when they manage several and must choose (the page lists them)."""
    manageable = organizations_allowing(user=request.user, action=MANAGE).order_by("name", "id")
    raw = request.GET.get("organization", "")
    if raw:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(ID_MAX)):
            raise Http404("No such organization among yours.")
        organization = manageable.filter(pk=int(raw)).first()
        if organization is not None:
            return organization, manageable
        if organizations_for_user(user=request.user).filter(pk=int(raw)).exists():
            raise PermissionDenied(
                f"Only admins and owners may add a {KINDS[kind]['title']} to this organization."
            )
        raise Http404("No such organization among yours.")
    organizations = list(manageable[:2])
    if not organizations:
        raise PermissionDenied(
            f"Only admins and owners of an organization may add a {KINDS[kind]['title']} to "
            "it, and you are neither in any of yours."
        )
    return (organizations[0] if len(organizations) == 1 else None), manageable


def _form_page(request: HttpRequest, kind: str, form, **context) -> HttpResponse:
    return render(
        request,
        f"notifications/{kind}_form.html",
        {"form": form, "kind": KINDS[kind]["title"], **context},
        status=400 if form.is_bound and form.errors else 200,
    )


def _add(request: HttpRequest, kind: str) -> HttpResponse:
    organization, manageable = _organization_to_add_in(request, kind)
    if organization is None:
        return render(
            request,
            "notifications/choose_organization.html",
            {"organizations": manageable, "kind": KINDS[kind]["title"]},
        )
    form = KINDS[kind]["form"](request.POST or None, organization=organization)
    if request.method == "POST" and form.is_valid():
        values = form.rule_values()
        rule = alert_filter_create(
            model=KINDS[kind]["model"],
            organization=organization,
            cameras=values.pop("cameras"),
            **values,
        )
        messages.success(request, f"Added {rule.name}.")
        if kind == "webhook":
            messages.info(request, "Copy its secret now to verify the signatures.")
            return redirect("webhook", webhook_id=rule.pk)
        return redirect("notifications")
    return _form_page(request, kind, form, organization=organization, rule=None, can_manage=True)


def _edit(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """A form for admins and owners, read-only for everyone else."""
    rule = _source_or_404(request, KINDS[kind]["model"], pk)
    form_class = KINDS[kind]["form"]
    context = {"organization": rule.organization, "rule": rule}
    if request.method == "POST":
        _manage_check(request, rule)
        # Validated on a copy: an invalid form must not rename the rule shown on the page.
        form = form_class(request.POST, instance=copy.copy(rule), organization=rule.organization)
        if form.is_valid():
            values = form.rule_values()
            alert_filter_update(rule=rule, cameras=values.pop("cameras"), **values)
            messages.success(request, f"Saved {rule.name}.")
            if kind == "webhook":
                return redirect("webhook", webhook_id=rule.pk)
            return redirect("notifications")
        return _form_page(request, kind, form, can_manage=True, **context)
    can_manage = role_allows(rule.member_role, MANAGE)
    # The URL in full only for those who may see secrets (it often carries a token).
    initial = {}
    if kind == "webhook":
        initial["url"] = rule.url if may_see_secrets(rule.member_role) else source_masked(rule.url)
    form = form_class(
        instance=rule, organization=rule.organization, read_only=not can_manage, initial=initial
    )
    return _form_page(request, kind, form, can_manage=can_manage, **context)


def _delete(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    rule = _source_or_404(request, KINDS[kind]["model"], pk)
    _manage_check(request, rule)
    alert_filter_delete(rule=rule)
    messages.success(request, f"Deleted {rule.name}.")
    return redirect("notifications")


@login_required
def rule_add(request: HttpRequest) -> HttpResponse:
    return _add(request, "rule")


@login_required
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    return _edit(request, "rule", rule_id)


@login_required
@require_POST
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    return _delete(request, "rule", rule_id)


@login_required
def webhook_add(request: HttpRequest) -> HttpResponse:
    return _add(request, "webhook")


@login_required
def webhook_edit(request: HttpRequest, webhook_id: int) -> HttpResponse:
    return _edit(request, "webhook", webhook_id)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, webhook_id: int) -> HttpResponse:
    return _delete(request, "webhook", webhook_id)


@login_required
def webhook_detail(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = _source_or_404(request, Webhook, webhook_id)
    deliveries = deliveries_for_webhook(webhook=webhook).order_by("-created_at", "-id")
    shows_secrets = may_see_secrets(webhook.member_role)
    return render(
        request,
        "notifications/webhook_detail.html",
        {
            "webhook": webhook,
            "filters": filters_in_words(webhook),
            "can_manage": role_allows(webhook.member_role, MANAGE),
            "shows_secrets": shows_secrets,
            "masked_url": source_masked(webhook.url),
            "deliveries": list(deliveries[:DELIVERIES_SHOWN]),
            "deliveries_shown": DELIVERIES_SHOWN,
        },
    )


@login_required
@require_POST
def webhook_rotate_secret(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = _source_or_404(request, Webhook, webhook_id)
    _manage_check(request, webhook)
    webhook_secret_rotate(webhook=webhook)
    messages.success(
        request, "New secret made: deliveries are signed with it from now on. Update your receiver."
    )
    return redirect("webhook", webhook_id=webhook.pk)


@login_required
@require_POST
def webhook_test(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook = _source_or_404(request, Webhook, webhook_id)
    _manage_check(request, webhook)
    try:
        webhook_test_send(webhook, request.user)
    except WebhookTestRateLimited as limited:
        messages.error(request, str(limited))
    else:
        messages.success(
            request, "Test queued: it shows in the log below once sent (reload to follow it)."
        )
    return redirect("webhook", webhook_id=webhook.pk)
