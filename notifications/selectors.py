"""Reads about alerts and webhooks, shared by the API, the pages, the bell and the assistant.

Scoping happens once, at the start (`alerts_for_user`), as in `events.selectors`: the assistant
counts through `alert_counts`, the alerts page lists through `alerts_for_user` with the same
window, so their numbers agree.

Counting rule: an alert counts in a window `[since, until)` when it was *raised* in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from notifications.models import Alert, AlertRule, Webhook, WebhookDelivery
from organizations.models import Membership, Organization
from organizations.selectors import LARGEST_ID, organizations_for_user


def alerts_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Alert]:
    if not user.is_authenticated:
        return Alert.objects.none()
    return Alert.objects.filter(organization__in=organizations_for_user(user=user))


def alerts_for_organization(*, organization: Organization) -> QuerySet[Alert]:
    return Alert.objects.filter(organization=organization)


def alerts_in_window(
    alerts: QuerySet[Alert], *, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[Alert]:
    if since is not None:
        alerts = alerts.filter(created_at__gte=since)
    if until is not None:
        alerts = alerts.filter(created_at__lt=until)
    return alerts


def browser_alerts(alerts: QuerySet[Alert]) -> QuerySet[Alert]:
    """The alerts the bell shows: raised by a rule that notifies the browser."""
    return alerts.filter(rule__notify_browser=True)


@dataclass(frozen=True)
class AlertCounts:
    total: int
    by_rule: dict[str, int]  # "rule name" or "webhook name" -> alerts
    webhooks_delivered: int
    webhooks_pending: int
    webhooks_failed: int


def alert_counts(alerts: QuerySet[Alert]) -> AlertCounts:
    """How many alerts, per rule or webhook, and how their webhook deliveries went."""
    by_rule: dict[str, int] = {}
    for rule_name, webhook_name, count in (
        alerts.values_list("rule__name", "webhook__name")
        .annotate(count=Count("id"))
        .order_by("rule__name", "webhook__name")
    ):
        name = rule_name if rule_name is not None else webhook_name
        by_rule[name] = by_rule.get(name, 0) + count
    deliveries = WebhookDelivery.objects.filter(alert__in=alerts).aggregate(
        delivered=Count("id", filter=Q(status=WebhookDelivery.Status.DELIVERED)),
        pending=Count("id", filter=Q(status=WebhookDelivery.Status.PENDING)),
        failed=Count("id", filter=Q(status=WebhookDelivery.Status.FAILED)),
    )
    return AlertCounts(
        total=sum(by_rule.values()),
        by_rule=by_rule,
        webhooks_delivered=deliveries["delivered"],
        webhooks_pending=deliveries["pending"],
        webhooks_failed=deliveries["failed"],
    )


def rules_for_organization(*, organization: Organization) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(organization=organization).prefetch_related("cameras")


def webhooks_for_organization(*, organization: Organization) -> QuerySet[Webhook]:
    return Webhook.objects.filter(organization=organization).prefetch_related("cameras")


def deliveries_for_webhook(*, webhook: Webhook) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(webhook=webhook).select_related("alert")


def alerts_matching(
    alerts: QuerySet[Alert],
    *,
    camera_public_ids: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
) -> QuerySet[Alert]:
    """Only the alerts on these cameras (public ids) and of these classes; empty means any."""
    if camera_public_ids:
        alerts = alerts.filter(camera__public_id__in=camera_public_ids)
    if labels:
        alerts = alerts.filter(label__in=labels)
    return alerts


def alert_source_get_for_user(
    *, model: type[AlertRule] | type[Webhook], pk: int, user: AbstractBaseUser | AnonymousUser
) -> AlertRule | Webhook | None:
    """The rule or webhook if it is one of the user's organizations', with the reader's role
    as `member_role` (as `camera_get_for_user` does); None otherwise, whatever the reason."""
    if not user.is_authenticated or not 0 < pk <= LARGEST_ID:
        return None
    role = Membership.objects.filter(user=user, organization=OuterRef("organization")).values(
        "role"
    )[:1]
    return (
        model.objects.filter(pk=pk, organization__in=organizations_for_user(user=user))
        .annotate(member_role=Subquery(role))
        .select_related("organization")
        .prefetch_related("cameras")
        .first()
    )
