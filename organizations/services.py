"""Writes about organizations, memberships and API tokens."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from organizations.models import ApiToken, Membership, Organization

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
    organization = Organization.objects.create(
        name=name, slug=_unique_slug(name), server_host_url=server_host_url, ws_port=ws_port
    )
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    return organization


def membership_add(*, organization: Organization, user: AbstractBaseUser, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


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


@transaction.atomic
def demo_setup(*, password: str) -> tuple[Organization, AbstractBaseUser]:
    """Create the demo organization and its owner `demo` with the given password."""
    User = get_user_model()
    # A superuser, so the newcomer can reach /admin/ with the same printed credentials.
    user = User.objects.create_superuser(
        username="demo", password=password, email="demo@example.com"
    )
    organization = organization_create(name="Demo Organization", owner=user)
    # Imported here: cameras builds on organizations, not the other way round.
    from cameras.services import camera_create

    # Live video with real detections on a fresh install, and a camera a browser webcam can
    # publish to (from /cameras/<id>/publish).
    camera_create(
        organization=organization,
        name="Demo camera",
        source="demo:",
        target_fps=15,
        detectors=["motion"],
    )
    camera_create(
        organization=organization, name="Browser webcam", source="push:", detectors=["motion"]
    )
    return organization, user
