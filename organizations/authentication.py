"""How API callers prove who they are: `Authorization: Bearer <token>` or a session with CSRF.

The same rules serve DRF views (`BearerTokenAuthentication`), plain async views such as the SSE
endpoint (`api_user_for_request`) and WebSockets (`organizations.ws_auth`).
"""

from __future__ import annotations

import functools

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from rest_framework import authentication, exceptions

from organizations.models import ApiToken
from organizations.selectors import api_token_lookup
from organizations.services import api_token_touch
from project.api_errors import json_error


class InvalidToken(Exception):
    pass


def bearer_token_from_header(header: str | bytes | None) -> str | None:
    """The raw token of an `Authorization: Bearer ...` header, or None if it is not one."""
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def token_for_raw(raw_token: str) -> ApiToken:
    """The live token (with its user) of a raw value; raises InvalidToken."""
    token = api_token_lookup(raw_token=raw_token)
    if token is None:
        raise InvalidToken("The API token is invalid or has been revoked.")
    api_token_touch(token=token)
    return token


def user_for_token(raw_token: str) -> AbstractBaseUser:
    return token_for_raw(raw_token).user


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw = bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION"))
        if raw is None:
            return None
        try:
            return user_for_token(raw), raw
        except InvalidToken as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason


class AuthFailure(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _user_for_request(request: HttpRequest) -> AbstractBaseUser:
    raw = bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION"))
    if raw is not None:
        try:
            token = token_for_raw(raw)
        except InvalidToken as exc:
            raise AuthFailure(401, str(exc), "invalid_token") from None
        # A stream opened with a token ends when that token is revoked (organizations.revocation).
        request.api_token_id = token.pk
        return token.user
    user = request.user
    if not user.is_authenticated:
        raise AuthFailure(
            401,
            "Authentication required: log in, or send 'Authorization: Bearer <token>'.",
            "not_authenticated",
        )
    # A session is sent by the browser on its own, so it must come with a CSRF token.
    reason = _CsrfCheck(lambda r: None).process_view(request, None, (), {})
    if reason:
        raise AuthFailure(403, f"CSRF check failed: {reason}", "csrf_failed")
    return user


async def api_user_for_request(request: HttpRequest) -> AbstractBaseUser:
    """Authenticate a plain (non-DRF) API request; raises AuthFailure with a JSON-ready reason."""
    return await sync_to_async(_user_for_request)(request)


def api_user_required(view):
    """For plain async API views (SSE, ingest): authenticate, then call `view(request, user, ...)`.

    Unauthenticated callers get the JSON error of `AuthFailure`. The view is CSRF-exempt for
    Django's middleware because `api_user_for_request` checks CSRF itself for session callers
    (a bearer token needs none)."""

    @csrf_exempt
    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args, **kwargs):
        try:
            user = await api_user_for_request(request)
        except AuthFailure as failure:
            return json_error(failure.status, failure.message, failure.code)
        return await view(request, user, *args, **kwargs)

    return wrapper
