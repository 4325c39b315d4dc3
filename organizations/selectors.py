"""Reads about organizations. Every other app's scoping starts from `organizations_for_user`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Case, IntegerField, QuerySet, Value, When

from organizations.models import ApiToken, Membership, Organization


def organizations_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user)


# Ids from URLs are unbounded digits; past the database's integer they cannot exist (and
# SQLite would raise instead of finding nothing).
LARGEST_ID = 2**63 - 1


def organization_get_for_user(
    *, user: AbstractBaseUser, organization_id: int
) -> Organization | None:
    if not 0 < organization_id <= LARGEST_ID:
        return None
    return organizations_for_user(user=user).filter(pk=organization_id).first()


def organization_default_for_user(*, user: AbstractBaseUser) -> Organization | None:
    """The user's organization when there is exactly one, else None (the caller must choose)."""
    organizations = list(organizations_for_user(user=user)[:2])
    return organizations[0] if len(organizations) == 1 else None


def organization_members(*, organization: Organization) -> QuerySet[Membership]:
    return organization.memberships.select_related("user").order_by("role", "user__username")


def organization_members_strongest_first(*, organization: Organization) -> QuerySet[Membership]:
    """The memberships for people managing them: owners first, then admins, members, viewers,
    each by username."""
    rank = Case(
        *(When(role=role, then=Value(position)) for position, role in enumerate(Membership.Role)),
        output_field=IntegerField(),
    )
    return (
        organization.memberships.select_related("user")
        .annotate(role_rank=rank)
        .order_by("role_rank", "user__username", "pk")
    )


def api_tokens_for_user(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


def api_token_lookup(*, raw_token: str) -> ApiToken | None:
    """The live token with this raw value, with its user loaded, or None."""
    # The digest is unique: no ordering to compute, on every API request.
    found = (
        ApiToken.objects.select_related("user")
        .filter(digest=ApiToken.digest_of(raw_token), user__is_active=True)
        .order_by()[:1]
    )
    return next(iter(found), None)


def membership_get(*, organization: Organization, user_id: int) -> Membership | None:
    if not 0 < user_id <= LARGEST_ID:
        return None
    return (
        Membership.objects.select_related("user", "organization")
        .filter(organization=organization, user_id=user_id)
        .first()
    )


def user_find_by_username_or_email(*, identifier: str) -> AbstractBaseUser | None:
    """The active user with this username, or else with this e-mail address (when exactly one
    account has it); None otherwise. Case-insensitive, as people type them."""
    User = get_user_model()
    identifier = identifier.strip()
    if not identifier:
        return None
    user = User.objects.filter(username__iexact=identifier, is_active=True).first()
    if user is None and "@" in identifier:
        matches = list(User.objects.filter(email__iexact=identifier, is_active=True)[:2])
        user = matches[0] if len(matches) == 1 else None
    return user
