"""Access that ends when it is revoked: open WebSockets and SSE streams close within about a
second of losing the access they were opened with.

What revokes (see `organizations.revocation_signals`): a membership deleted or its role lowered,
an API token deleted, a user deactivated, a session logged out, a password changed (every
session of the user: Django's sessions hold a hash of the password they logged in with). Once the transaction commits,
one message goes to the channel-layer group `access_revoked` saying whose access ended: the
user, narrowed to one organization, one token or one session where that is what ended.

Who listens: one listener per process (per event loop), not one per socket. A camera viewer has
no channel of its own (see `cameras.fanout`) and must not get one for this: a revocation is rare,
viewers are many. The listener receives through a `GroupReceiver` (which waits out Redis
restarts and joins its group again) and closes the matching entries of the process's registry of
open accesses (user id -> `OpenAccess`). It starts with the first open access of the process and
stops with the last, like a camera hub.

Belt and braces: a broadcast can be missed (Redis away at that moment, a bulk `update()` that
sends no signal, a change made from `manage.py shell` while the in-memory layer serves one
process). Every `ACCESS_RECHECK_SECONDS` the listener checks all open accesses of its process
against the database at once (one query for memberships and passwords, one for tokens and one
for sessions when such accesses are open; off the event loop, however many sockets are open) and
closes those that lost access, including a session deleted or expired (logged out elsewhere,
flushed) or whose password hash no longer matches. So a missed broadcast delays the end of access by at most that
long; it never keeps it open.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from organizations.models import ApiToken, Membership
from organizations.permissions import ROLE_RANK
from project.channel_layer import GroupReceiver, group_send_or_drop
from project.contained import ContainedFailures

logger = logging.getLogger(__name__)

REVOKED_GROUP = "access_revoked"
REVOKED_MESSAGE_TYPE = "access.revoked"
# The application close code a WebSocket gets when its access ends (4000-4999 are the
# application's; 4403 reads as "forbidden"). The client may reconnect: the handshake then
# checks the access it has now.
WEBSOCKET_CLOSE_CODE = 4403
RECEIVE_RETRY_SECONDS = 1.0


def role_lowered(before: str, after: str) -> bool:
    """A role moved down closes the user's sockets and streams in that organization (they
    reconnect with what the new role allows); a role moved up does not. Unknown roles rank
    lowest, so a role the ranking does not know yet never keeps access open."""
    return ROLE_RANK.get(after, -1) < ROLE_RANK.get(before, -1)


def session_fingerprint(session_key: str | None) -> str | None:
    """What a broadcast says about a session: never the key itself, which logs in."""
    if not session_key:
        return None
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Credential:
    """Who opened a socket or stream, and with what: a token (then only that token's
    revocation ends it, besides the user's) or a session. A session's key and the password
    hash it logged in with stay in this process's memory, for the periodic re-check; a
    broadcast names a session by its fingerprint only."""

    user_id: int
    token_id: int | None = None
    session: str | None = None
    session_key: str | None = field(default=None, repr=False)
    session_auth_hash: str | None = field(default=None, repr=False)


def _session_credential(user_id: int, session) -> Credential:
    key = getattr(session, "session_key", None)
    return Credential(
        user_id,
        session=session_fingerprint(key),
        session_key=key,
        session_auth_hash=session.get(HASH_SESSION_KEY) if key else None,
    )


def credential_for_websocket(scope: dict[str, Any]) -> Credential | None:
    """The credential of a WebSocket's scope (see `organizations.ws_auth`); None if anonymous.
    Call in a thread: it may load the session."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    if scope.get("auth") == "token":
        return Credential(user.pk, token_id=scope.get("token_id"))
    return _session_credential(user.pk, scope.get("session"))


def credential_for_request(request, user) -> Credential:
    """The credential of a request authenticated by `organizations.authentication`. Call in a
    thread: it may load the session."""
    token_id = getattr(request, "api_token_id", None)
    if token_id is not None:
        return Credential(user.pk, token_id=token_id)
    return _session_credential(user.pk, getattr(request, "session", None))


async def acredential_for_request(request, user) -> Credential:
    """`credential_for_request` for async views: a token's needs no thread, a session's may."""
    if getattr(request, "api_token_id", None) is not None:
        return credential_for_request(request, user)
    return await sync_to_async(credential_for_request)(request, user)


class OpenAccess:
    """One open WebSocket or SSE stream and the access it holds.

    `end` is called once, on the event loop, when the access is revoked: it must not block
    (close the socket or wake the stream). `organization_id` is None until the opener has
    checked the access (it registers first, so a revocation committed during the check is not
    missed): until then any revocation of the user matches.
    """

    __slots__ = ("credential", "organization_id", "role", "ended", "_end")

    def __init__(
        self,
        credential: Credential,
        *,
        end: Callable[[], None],
        organization_id: int | None = None,
    ):
        self.credential = credential
        self.organization_id = organization_id
        # The role seen by the first re-check: a later re-check that finds it lowered ends the
        # access (a lowered role whose broadcast was missed).
        self.role: str | None = None
        self.ended = False
        self._end = end

    def matches(self, message: dict[str, Any]) -> bool:
        credential = self.credential
        if message.get("user") != credential.user_id:
            return False
        if message.get("token") is not None:
            return message["token"] == credential.token_id
        if message.get("all_sessions"):
            return credential.token_id is None
        if message.get("session") is not None:
            return message["session"] == credential.session
        organization = message.get("organization")
        return organization is None or self.organization_id in (None, organization)

    def revoke(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        logger.info(
            "Closing a %s stream of user %s: %s",
            "token" if self.credential.token_id is not None else "session",
            self.credential.user_id,
            reason,
        )
        try:
            self._end()
        except Exception:
            logger.exception("Could not end a revoked stream of user %s", self.credential.user_id)


# --- announcing ------------------------------------------------------------------------------


def revocation_announce(
    *,
    user_id: int,
    reason: str,
    organization_id: int | None = None,
    token_id: int | None = None,
    session: str | None = None,
    all_sessions: bool = False,
) -> None:
    """Tell every process, once the current transaction commits (a rolled-back change revokes
    nothing), that this access ended: the user's, or only in one organization, of one token,
    of one session, or of all their sessions (not their tokens)."""
    message = {
        "type": REVOKED_MESSAGE_TYPE,
        "user": user_id,
        "organization": organization_id,
        "token": token_id,
        "session": session,
        "all_sessions": all_sessions,
        "reason": reason,
    }
    transaction.on_commit(lambda: _broadcast(message))


def _broadcast(message: dict[str, Any]) -> None:
    # The change is committed: failing here would turn a done removal into an error page. A
    # broadcast lost to an unreachable layer is made up for by the periodic re-check.
    try:
        async_to_sync(group_send_or_drop)(
            get_channel_layer(), REVOKED_GROUP, message, where="revocation"
        )
    except Exception:
        logger.exception("Could not announce that access of user %s ended", message["user"])


# --- the process's registry and listener -----------------------------------------------------


class _Registry:
    """The open accesses of one event loop, with the one listener that ends them."""

    def __init__(self) -> None:
        self.by_user: dict[int, set[OpenAccess]] = {}
        self._receiver = GroupReceiver(
            get_channel_layer(), where="revocation", groups=[REVOKED_GROUP]
        )
        self._tasks: list[asyncio.Task] = []

    def __len__(self) -> int:
        return sum(len(accesses) for accesses in self.by_user.values())

    async def start(self) -> None:
        # Never raises for an unreachable layer: the receiver joins once it is back, and the
        # re-check covers the meantime.
        await self._receiver.join()
        self._tasks = [
            asyncio.create_task(self._receive_revocations()),
            asyncio.create_task(self._recheck_periodically()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=RECEIVE_RETRY_SECONDS)
        self._tasks = []
        await self._receiver.close()

    def add(self, access: OpenAccess) -> None:
        self.by_user.setdefault(access.credential.user_id, set()).add(access)

    def discard(self, access: OpenAccess) -> None:
        accesses = self.by_user.get(access.credential.user_id)
        if accesses is not None:
            accesses.discard(access)
            if not accesses:
                del self.by_user[access.credential.user_id]

    def revoke_matching(self, message: dict[str, Any]) -> int:
        ended = 0
        for access in list(self.by_user.get(message.get("user"), ())):
            if access.matches(message):
                access.revoke(message.get("reason") or "access revoked")
                ended += 1
        return ended

    async def _receive_revocations(self) -> None:
        failures = ContainedFailures(what="Receiving access revocations", logger=logger)
        while True:
            received = False
            try:
                message = await self._receiver.receive()
                received = True
                if message.get("type") == REVOKED_MESSAGE_TYPE:
                    self.revoke_matching(message)
            except Exception as error:
                failures.failed(error)
                if not received:
                    await asyncio.sleep(RECEIVE_RETRY_SECONDS)  # never spin on a failure
            else:
                failures.succeeded()

    async def _recheck_periodically(self) -> None:
        # The database may be away too: told once per outage, and tried again next period.
        failures = ContainedFailures(what="Re-checking open streams' access", logger=logger)
        while True:
            await asyncio.sleep(settings.ACCESS_RECHECK_SECONDS)
            try:
                await self.recheck()
            except Exception as error:
                failures.failed(error)
            else:
                failures.succeeded()

    async def recheck(self) -> None:
        accesses = [
            access
            for group in self.by_user.values()
            for access in group
            if not access.ended and access.organization_id is not None
        ]
        if not accesses:
            return
        found = await database_sync_to_async(_access_in_database)(
            {access.credential.user_id for access in accesses},
            {access.credential.token_id for access in accesses} - {None},
            {access.credential.session_key for access in accesses} - {None},
        )
        for access in accesses:
            credential = access.credential
            role = found.roles.get((credential.user_id, access.organization_id))
            if credential.token_id is not None and credential.token_id not in found.tokens:
                access.revoke("token revoked (found by the periodic re-check)")
            elif credential.session_key is not None and (
                credential.session_key not in found.sessions
            ):
                access.revoke("session ended (found by the periodic re-check)")
            elif not found.session_hash_current(credential):
                access.revoke("password changed (found by the periodic re-check)")
            elif role is None:
                access.revoke("no longer a member (found by the periodic re-check)")
            elif access.role is not None and role_lowered(access.role, role):
                access.revoke("role lowered (found by the periodic re-check)")
            else:
                access.role = role


@dataclass
class _AccessFound:
    roles: dict[tuple[int, int], str]  # (user, organization) -> role, active users only
    passwords: dict[int, str]  # user -> stored password hash
    tokens: set[int]  # the tokens that still exist
    sessions: set[str]  # the session keys that still exist and have not expired

    def session_hash_current(self, credential: Credential) -> bool:
        """Whether the session still holds the hash of the user's password, as Django's own
        `get_user` decides it (the secret key's fallbacks included)."""
        stored = credential.session_auth_hash
        password = self.passwords.get(credential.user_id)
        if stored is None or password is None:
            return True  # no hash to compare (a token, or no membership: refused otherwise)
        user = get_user_model()(pk=credential.user_id, password=password)
        return constant_time_compare(stored, user.get_session_auth_hash()) or any(
            constant_time_compare(stored, fallback)
            for fallback in user.get_session_auth_fallback_hash()
        )


def _sessions_existing(session_keys: set[str]) -> set[str]:
    if not session_keys:
        return set()
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        from django.contrib.sessions.models import Session

        return set(
            Session.objects.filter(
                session_key__in=list(session_keys), expire_date__gt=timezone.now()
            ).values_list("session_key", flat=True)
        )
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return {key for key in session_keys if store().exists(key)}


def _access_in_database(
    user_ids: Iterable[int], token_ids: set[int], session_keys: set[str]
) -> _AccessFound:
    roles: dict[tuple[int, int], str] = {}
    passwords: dict[int, str] = {}
    for user_id, organization_id, role, password in Membership.objects.filter(
        user_id__in=list(user_ids), user__is_active=True
    ).values_list("user_id", "organization_id", "role", "user__password"):
        roles[(user_id, organization_id)] = role
        passwords[user_id] = password
    tokens = (
        set(ApiToken.objects.filter(pk__in=list(token_ids)).values_list("pk", flat=True))
        if token_ids
        else set()
    )
    return _AccessFound(roles, passwords, tokens, _sessions_existing(session_keys))


# One registry per event loop: its receiver is bound to the loop it was created on.
_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = (
    weakref.WeakKeyDictionary()
)
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def access_open(access: OpenAccess) -> None:
    """Register an open socket or stream; call before checking its access, and `access_close`
    when it ends."""
    loop = asyncio.get_running_loop()
    async with _locks.setdefault(loop, asyncio.Lock()):
        registry = _registries.get(loop)
        if registry is None:
            registry = _Registry()
            await registry.start()
            _registries[loop] = registry
        registry.add(access)


async def access_close(access: OpenAccess) -> None:
    loop = asyncio.get_running_loop()
    async with _locks.setdefault(loop, asyncio.Lock()):
        registry = _registries.get(loop)
        if registry is None:
            return
        registry.discard(access)
        if not registry.by_user:
            del _registries[loop]
            await registry.stop()


def open_access_count() -> int:
    """Open sockets and streams registered on this event loop (for tests and diagnostics)."""
    registry = _registries.get(asyncio.get_running_loop())
    return len(registry) if registry is not None else 0
