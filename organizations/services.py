"""Writes about organizations, memberships and API tokens."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from organizations.models import ApiToken, Membership, Organization
from organizations.permissions import (
    Action,
    ActionForbidden,
    action_to_assign,
    permission_require,
    role_allows,
)
from organizations.selectors import membership_get, user_find_by_username_or_email
from project.text_input import UnstorableText, text_storable_check

TOKEN_PREFIX = "sl_"


def _unique_slug(name: str) -> str:
    base = slugify(name)[:100] or "organization"
    slug, n = base, 2
    while Organization.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def organization_create(
    *, name: str, owner: AbstractBaseUser, server_host_url: str = "", ws_port: int = 7103
) -> Organization:
    name = _storable(name, field="name")
    server_host_url = _storable(server_host_url, field="server_host_url")
    organization = Organization(
        name=name, slug=_unique_slug(name), server_host_url=server_host_url.strip(), ws_port=ws_port
    )
    organization.full_clean()
    organization.save()
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    return organization


def membership_add(*, organization: Organization, user: AbstractBaseUser, role: str) -> Membership:
    """Make `user` a member with `role` (set-up and fixtures; people go through `member_add`)."""
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


class MembershipConflict(Exception):
    """A membership change the rules refuse whoever asks (the last owner, a duplicate)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message, self.code = message, code


def _require_may_assign(*, actor_role: str, organization: Organization, role: str) -> None:
    action = action_to_assign(role)
    if not role_allows(actor_role, action):
        raise ActionForbidden(action=action, role=actor_role, organization=organization)


def _storable(value: str, *, field: str) -> str:
    """PostgreSQL cannot store NUL (nor compare with it: a lookup fails too): refused here, so
    that pages, the API and the admin all answer it as bad input instead of a 500."""
    try:
        return text_storable_check(value, field=field)
    except UnstorableText as refused:
        raise ValidationError({field: [refused.message]}) from None


def _role_check(role: str) -> None:
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": [f"Unknown role; use one of {', '.join(Membership.Role.values)}."]}
        )


def _owners_locked(organization: Organization) -> int:
    """How many owners the organization has, their rows locked until the transaction ends,
    so that two owners demoting each other at once cannot leave none."""
    return len(
        Membership.objects.select_for_update()
        .filter(organization=organization, role=Membership.Role.OWNER)
        .values_list("pk", flat=True)
    )


@transaction.atomic
def member_add(
    *, actor: AbstractBaseUser, organization: Organization, identifier: str, role: str
) -> Membership:
    """Add the user named by username or e-mail with `role`. Admins add members and viewers;
    owners add anyone."""
    actor_role = permission_require(
        user=actor, organization=organization, action=Action.MANAGE_MEMBERS
    )
    _role_check(role)
    _require_may_assign(actor_role=actor_role, organization=organization, role=role)
    user = user_find_by_username_or_email(identifier=_storable(identifier, field="user"))
    if user is None:
        raise ValidationError({"user": ["No active user has this username or e-mail address."]})
    already_member = MembershipConflict(
        f"{user.get_username()} is already a member; change their role instead.",
        "already_member",
    )
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise already_member
    try:
        # A savepoint: two adds at once both pass the check above, and the unique constraint
        # refuses the second one without spoiling the surrounding transaction.
        with transaction.atomic():
            return Membership.objects.create(organization=organization, user=user, role=role)
    except IntegrityError:
        raise already_member from None


def _membership_to_manage(
    *, actor: AbstractBaseUser, organization: Organization, user_id: int
) -> tuple[str, Membership | None]:
    actor_role = permission_require(
        user=actor, organization=organization, action=Action.MANAGE_MEMBERS
    )
    return actor_role, membership_get(organization=organization, user_id=user_id)


@transaction.atomic
def member_role_change(
    *, actor: AbstractBaseUser, organization: Organization, user_id: int, role: str
) -> Membership | None:
    """Give a member another role (None: no such member). The actor must be allowed to manage
    both the member's current role and the new one; the last owner stays an owner."""
    actor_role, membership = _membership_to_manage(
        actor=actor, organization=organization, user_id=user_id
    )
    if membership is None:
        return None
    _role_check(role)
    _require_may_assign(actor_role=actor_role, organization=organization, role=membership.role)
    _require_may_assign(actor_role=actor_role, organization=organization, role=role)
    if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER:
        if _owners_locked(organization) <= 1:
            raise MembershipConflict(
                f"{membership.user.get_username()} is the last owner; make someone else an "
                "owner first.",
                "last_owner",
            )
    if membership.role != role:
        membership.role = role
        # save(), not update(): whoever listens for role changes (closing streams) must hear it.
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, actor: AbstractBaseUser, organization: Organization, user_id: int) -> bool:
    """Remove a member (False: no such member); the last owner cannot be removed."""
    actor_role, membership = _membership_to_manage(
        actor=actor, organization=organization, user_id=user_id
    )
    if membership is None:
        return False
    _require_may_assign(actor_role=actor_role, organization=organization, role=membership.role)
    if membership.role == Membership.Role.OWNER and _owners_locked(organization) <= 1:
        raise MembershipConflict(
            f"{membership.user.get_username()} is the last owner and cannot be removed; make "
            "someone else an owner first, or delete the organization.",
            "last_owner",
        )
    # delete() on the instance: listeners (closing the member's streams) must hear it.
    membership.delete()
    return True


ORGANIZATION_EDITABLE_FIELDS = ("name", "server_host_url", "ws_port", "time_zone", "system_prompt")
# Kept as typed (inner line breaks and indentation are part of the instructions).
_UNSTRIPPED_FIELDS = ("system_prompt",)


@transaction.atomic
def organization_update(
    *, actor: AbstractBaseUser, organization: Organization, **fields: object
) -> Organization:
    """Change the organization's name, WebSocket host settings, time zone or assistant
    instructions (admins and owners); full_clean validates them (time zone name, length)."""
    permission_require(user=actor, organization=organization, action=Action.EDIT_ORGANIZATION)
    unknown = set(fields) - set(ORGANIZATION_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown organization field(s): {', '.join(sorted(unknown))}.")
    for name, value in fields.items():
        if isinstance(value, str):
            value = _storable(value, field=name)
            value = value.strip() if name not in _UNSTRIPPED_FIELDS else value.strip("\n\r ")
        setattr(organization, name, value)
    organization.full_clean(exclude=["slug"])
    organization.save(update_fields=list(fields))
    return organization


@transaction.atomic
def organization_delete(*, actor: AbstractBaseUser, organization: Organization) -> None:
    """Delete the organization with its memberships and whatever the apps built on it keep
    (owners only). Those cascade, with their apps' `pre_delete` receivers: a camera's events and
    snapshot files go with it, though organizations knows nothing of cameras or events."""
    permission_require(user=actor, organization=organization, action=Action.DELETE_ORGANIZATION)
    # One by one, so that whoever listens for removed memberships hears each of them.
    for membership in organization.memberships.all():
        membership.delete()
    organization.delete()


def api_token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Create a token and return it with its raw value, which is never stored or shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[:10], digest=ApiToken.digest_of(raw)
    )
    return token, raw


@transaction.atomic
def api_token_regenerate(*, user: AbstractBaseUser) -> tuple[ApiToken, str]:
    """Revoke every token the user has and issue one new one."""
    ApiToken.objects.filter(user=user).delete()
    return api_token_create(user=user, name="Regenerated on the tokens page")


def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> bool:
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return deleted > 0


def api_token_touch(*, token: ApiToken) -> None:
    # At most one write a minute per token: a busy client should not write on every request.
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)


def demo_organization_create(*, password: str) -> tuple[Organization, AbstractBaseUser]:
    """Create the demo organization and its owner `demo` with the given password (its cameras
    are cameras' part of the demo: `cameras.services.demo_setup`)."""
    User = get_user_model()
    # A superuser, so the newcomer can reach /admin/ with the same printed credentials.
    user = User.objects.create_superuser(
        username="demo", password=password, email="demo@example.com"
    )
    organization = organization_create(name="Demo Organization", owner=user)
    return organization, user
