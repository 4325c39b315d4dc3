"""Which changes end access, found from model signals so every path is covered: the product's
member and token pages and API, the Django admin, `manage.py shell`, a cascade (deleting a user
or an organization deletes its memberships and tokens, one signal each).

A bulk `QuerySet.update()` sends no signal; the periodic re-check of `organizations.revocation`
ends such access within `ACCESS_RECHECK_SECONDS`. Connected in `OrganizationsConfig.ready`.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save

from organizations.models import ApiToken, Membership
from organizations.revocation import revocation_announce, role_lowered, session_fingerprint


def _membership_before_save(sender, instance: Membership, raw: bool = False, **kwargs) -> None:
    # One read per membership save (rare): the role it had, to tell a lowered role.
    instance._stored_before_save = (
        None
        if raw or instance.pk is None
        else Membership.objects.filter(pk=instance.pk)
        .values("user_id", "organization_id", "role")
        .first()
    )


def _membership_saved(sender, instance: Membership, raw: bool = False, **kwargs) -> None:
    before = getattr(instance, "_stored_before_save", None)
    if raw or before is None:
        return
    if (before["user_id"], before["organization_id"]) != (
        instance.user_id,
        instance.organization_id,
    ):
        # Edited to another user or organization: the old pair lost its membership.
        revocation_announce(
            user_id=before["user_id"],
            organization_id=before["organization_id"],
            reason="membership moved",
        )
    elif role_lowered(before["role"], instance.role):
        revocation_announce(
            user_id=instance.user_id,
            organization_id=instance.organization_id,
            reason=f"role lowered from {before['role']} to {instance.role}",
        )


def _membership_deleted(sender, instance: Membership, **kwargs) -> None:
    revocation_announce(
        user_id=instance.user_id, organization_id=instance.organization_id, reason="member removed"
    )


def _token_deleted(sender, instance: ApiToken, **kwargs) -> None:
    revocation_announce(user_id=instance.user_id, token_id=instance.pk, reason="token revoked")


def _user_saved(sender, instance, created: bool, raw: bool = False, update_fields=None, **kwargs):
    if created or raw:
        return
    # Saving an already inactive user announces again; harmless (nothing of theirs is open),
    # and cheaper than reading the old value on every save (each login saves the user).
    if not instance.is_active and (update_fields is None or "is_active" in update_fields):
        revocation_announce(user_id=instance.pk, reason="user deactivated")
    # `set_password` keeps the new password in `_password` until the save that stores it
    # (this one) ends: a changed password, told without reading the old one. Sessions hold a
    # hash of the password they logged in with, so all of them end; tokens do not. A password
    # written some other way is found by the periodic re-check.
    elif getattr(instance, "_password", None) is not None:
        revocation_announce(user_id=instance.pk, all_sessions=True, reason="password changed")


def _logged_out(sender, request, user, **kwargs) -> None:
    session = session_fingerprint(getattr(getattr(request, "session", None), "session_key", None))
    if user is not None and session is not None:
        revocation_announce(user_id=user.pk, session=session, reason="logged out")


def connect() -> None:
    uid = "organizations.revocation"
    pre_save.connect(_membership_before_save, sender=Membership, dispatch_uid=uid)
    post_save.connect(_membership_saved, sender=Membership, dispatch_uid=uid)
    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid=uid)
    post_delete.connect(_token_deleted, sender=ApiToken, dispatch_uid=uid)
    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid=uid)
    user_logged_out.connect(_logged_out, dispatch_uid=uid)
