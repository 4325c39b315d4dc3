"""What each role may do in an organization: the one place that decides it.

Roles, from the least to the most powerful: viewer < member < admin < owner. Every action has
the least role that may perform it; a role may do everything the roles below it may. The API,
the pages, frame ingest, the WebSocket consumer and the admin all ask `role_allows` (with a
role they already loaded, e.g. `camera.member_role`) or `permission_require` here, so the table
in README is this module's `MINIMUM_ROLE`, nothing else.

Isolation between organizations is decided before this (the `*_for_user` selectors): someone
outside an organization never gets here with one of its objects, and sees 404, not 403.
"""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from rest_framework.exceptions import PermissionDenied

from organizations.models import Membership, Organization

Role = Membership.Role

ROLE_RANK: dict[str, int] = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Action(StrEnum):
    WATCH = "watch live video"
    REVIEW_EVENTS = "review events, snapshots and activity"
    CHAT = "chat with the assistant"
    PUBLISH = "publish frames into push: cameras"
    MANAGE_CAMERAS = "add, change and delete cameras"
    SEE_CAMERA_SECRETS = "see camera sources with their credentials"
    EDIT_ORGANIZATION = "change the organization's settings"
    MANAGE_MEMBERS = "add, change and remove members and viewers"
    MANAGE_ADMINS = "add, change and remove admins and owners"
    DELETE_ORGANIZATION = "delete the organization"


MINIMUM_ROLE: dict[Action, str] = {
    Action.WATCH: Role.VIEWER,
    Action.REVIEW_EVENTS: Role.VIEWER,
    Action.CHAT: Role.VIEWER,
    Action.PUBLISH: Role.MEMBER,
    Action.MANAGE_CAMERAS: Role.ADMIN,
    Action.SEE_CAMERA_SECRETS: Role.ADMIN,
    Action.EDIT_ORGANIZATION: Role.ADMIN,
    Action.MANAGE_MEMBERS: Role.ADMIN,
    Action.MANAGE_ADMINS: Role.OWNER,
    Action.DELETE_ORGANIZATION: Role.OWNER,
}

_WHO_MAY = {
    Role.VIEWER: "every member",
    Role.MEMBER: "members, admins and owners",
    Role.ADMIN: "admins and owners",
    Role.OWNER: "owners",
}


class ActionForbidden(PermissionDenied):
    """The user belongs to the organization but their role does not allow the action.

    A DRF PermissionDenied, so the API answers `403 {"error": <message>, "code": "forbidden"}`;
    pages and plain views turn it into their own 403 with the same message."""

    default_code = "forbidden"

    def __init__(self, *, action: Action, role: str | None, organization: Organization | None):
        self.action, self.role = action, role
        where = f" in {organization.name}" if organization is not None else ""
        self.message = (
            f"Only {_WHO_MAY[MINIMUM_ROLE[action]]} may {action.value}; "
            f"your role{where} is {role or 'none'}."
        )
        super().__init__(detail=self.message, code="forbidden")


def role_allows(role: str | None, action: Action) -> bool:
    """Whether `role` (a Membership.Role value, or None for no membership) may do `action`."""
    if role not in ROLE_RANK:
        return False
    return ROLE_RANK[role] >= ROLE_RANK[MINIMUM_ROLE[action]]


def action_to_assign(target_role: str) -> Action:
    """What giving someone `target_role`, or changing or removing someone who holds it, is:
    admins manage members and viewers, owners manage everyone."""
    if target_role in (Role.ADMIN, Role.OWNER):
        return Action.MANAGE_ADMINS
    return Action.MANAGE_MEMBERS


def role_may_assign(role: str | None, target_role: str) -> bool:
    """Whether `role` may give someone `target_role` or change/remove someone who holds it."""
    return role_allows(role, action_to_assign(target_role))


def role_of(
    *, user: AbstractBaseUser | AnonymousUser | None, organization: Organization
) -> str | None:
    """The user's role in `organization`, None when they are not a member."""
    if user is None or not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user=user, organization=organization)
        .values_list("role", flat=True)
        .first()
    )


def roles_by_organization(*, user: AbstractBaseUser | AnonymousUser | None) -> dict[int, str]:
    """The user's role in each of their organizations, in one query (for lists)."""
    if user is None or not user.is_authenticated:
        return {}
    return dict(Membership.objects.filter(user=user).values_list("organization_id", "role"))


def permission_require(
    *,
    user: AbstractBaseUser | AnonymousUser | None,
    organization: Organization,
    action: Action,
    role: str | None = None,
) -> str:
    """Raise ActionForbidden unless the user may do `action` in `organization`; return the role.

    Pass `role` when it is already loaded (it is then trusted, not queried again)."""
    if role is None:
        role = role_of(user=user, organization=organization)
    if not role_allows(role, action):
        raise ActionForbidden(action=action, role=role, organization=organization)
    return role


def organizations_allowing(
    *, user: AbstractBaseUser | AnonymousUser | None, action: Action
) -> QuerySet[Organization]:
    """The user's organizations where their role allows `action` (the admin's scoping)."""
    if user is None or not user.is_authenticated:
        return Organization.objects.none()
    rank = ROLE_RANK[MINIMUM_ROLE[action]]
    roles = [role for role, role_rank in ROLE_RANK.items() if role_rank >= rank]
    return Organization.objects.filter(
        memberships__user=user, memberships__role__in=roles
    ).distinct()
