"""Django's own middlewares, with their hooks run on the event loop instead of a worker thread.

Under ASGI, `MiddlewareMixin` runs every `process_request` and `process_response` through
`sync_to_async(thread_sensitive=True)`: the seven built-in middlewares cost thirteen hops to a
worker thread and back per request, and the first one makes Django start a thread for the
request (and SQLite a connection for that thread). A chat prompt spent more CPU on those hops
than on its queries. These hooks only read headers and cookies and set attributes, so they run
inline here; the rare cases that do touch the database or a large body (a session or messages
to save, a CSRF token to find in a big form) still go to a thread, as Django would.

Each class is the Django middleware of the same name; in a sync request (the test client, WSGI)
they behave exactly like it.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security

# Above this size a form body may be on disk (Django spools it past FILE_UPLOAD_MAX_MEMORY_SIZE)
# and parsing it for a CSRF token is real work: that goes to a thread.
INLINE_BODY_MAX_BYTES = 64 * 1024


class _InlineHooks:
    """`process_request` and `process_response` run on the loop; `_response_needs_thread`
    says when a response hook must go to a thread after all."""

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self._response_needs_thread(request):
                return await sync_to_async(self.process_response)(request, response)
            response = self.process_response(request, response)
        return response

    def _response_needs_thread(self, request) -> bool:
        return False


class SecurityMiddleware(_InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(_InlineHooks, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(_InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class AuthenticationMiddleware(_InlineHooks, auth.AuthenticationMiddleware):
    # Sets lazy `request.user` and `request.auser`: nothing is read until a view asks.
    pass


class SessionMiddleware(_InlineHooks, sessions.SessionMiddleware):
    # Creating the session store reads nothing; only saving a changed session writes.
    def _response_needs_thread(self, request) -> bool:
        return request.session.modified or settings.SESSION_SAVE_EVERY_REQUEST


class MessageMiddleware(_InlineHooks, messages.MessageMiddleware):
    # Messages added or shown this request are written back (to the session): that may read it.
    def _response_needs_thread(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class CsrfViewMiddleware(_InlineHooks, csrf.CsrfViewMiddleware):
    def __init__(self, get_response):
        super().__init__(get_response)
        if self.async_mode and not settings.CSRF_USE_SESSIONS:
            # Django calls process_view itself (after URL resolution) and hops to a thread
            # for it unless it is a coroutine function: give the async request one.
            self.process_view = self._process_view_on_loop

    async def __acall__(self, request):
        if settings.CSRF_USE_SESSIONS:  # the secret is read from the session: the database
            return await csrf.CsrfViewMiddleware.__acall__(self, request)
        return await super().__acall__(request)

    async def _process_view_on_loop(self, request, callback, callback_args, callback_kwargs):
        check = super().process_view
        if _body_size(request) > INLINE_BODY_MAX_BYTES:
            return await sync_to_async(check)(request, callback, callback_args, callback_kwargs)
        return check(request, callback, callback_args, callback_kwargs)


def _body_size(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return INLINE_BODY_MAX_BYTES + 1
