"""Reads about organizations. Every other app's scoping starts from `organizations_for_user`."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from organizations.models import ApiToken, Membership, Organization


def organizations_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user)


def organization_get_for_user(
    *, user: AbstractBaseUser, organization_id: int
) -> Organization | None:
    return organizations_for_user(user=user).filter(pk=organization_id).first()


def organization_default_for_user(*, user: AbstractBaseUser) -> Organization | None:
    """The user's organization when there is exactly one, else None (the caller must choose)."""
    organizations = list(organizations_for_user(user=user)[:2])
    return organizations[0] if len(organizations) == 1 else None


def membership_role(*, user: AbstractBaseUser, organization: Organization) -> str | None:
    return (
        Membership.objects.filter(user=user, organization=organization)
        .values_list("role", flat=True)
        .first()
    )


def organization_members(*, organization: Organization) -> QuerySet[Membership]:
    return organization.memberships.select_related("user").order_by("role", "user__username")


def api_tokens_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


def api_token_lookup(*, raw_token: str) -> ApiToken | None:
    """The live token with this raw value, with its user loaded, or None."""
    return (
        ApiToken.objects.select_related("user")
        .filter(digest=ApiToken.digest_of(raw_token), user__is_active=True)
        .first()
    )
