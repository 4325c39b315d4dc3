"""Who may open a WebSocket.

Browsers send the session cookie on their own, even from another site, so a cookie-authenticated
socket must come with an Origin among ALLOWED_HOSTS (no cross-site WebSocket hijacking). A client
that sends `Authorization: Bearer <token>` proves itself with something a browser never attaches
on its own, so it needs no Origin (command-line and service clients send none).
"""

from __future__ import annotations

from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import validate_host

from organizations.authentication import InvalidToken, bearer_token_from_header, token_for_raw
from organizations.models import ApiToken


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


def origin_allowed(origin: bytes | None) -> bool:
    if not origin:
        return False
    parsed = urlparse(origin.decode("latin-1"))
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return False
    host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
    return validate_host(host, settings.ALLOWED_HOSTS)


@database_sync_to_async
def _token_for_raw(raw: str) -> ApiToken | None:
    try:
        return token_for_raw(raw)
    except InvalidToken:
        return None


async def _refuse(scope, receive, send) -> None:
    # Closing during the handshake answers HTTP 403: nothing of the camera is ever sent.
    await WebsocketDenier()(scope, receive, send)


class WebSocketAuthMiddleware:
    """Sets scope["user"] from a bearer token or from the session (after an Origin check).

    scope["auth"] says which; a token socket also gets scope["token_id"], so revoking that
    token closes it (see organizations.revocation)."""

    def __init__(self, inner):
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        raw = bearer_token_from_header(_header(scope, b"authorization"))
        if raw is not None:
            token = await _token_for_raw(raw)
            if token is None:
                return await _refuse(scope, receive, send)
            return await self.inner(
                {**scope, "user": token.user, "auth": "token", "token_id": token.pk}, receive, send
            )
        if not origin_allowed(_header(scope, b"origin")):
            return await _refuse(scope, receive, send)
        return await self.session_stack({**scope, "auth": "session"}, receive, send)
