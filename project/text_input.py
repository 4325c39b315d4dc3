"""Text the database cannot store, refused as bad input instead of failing on the way in.

PostgreSQL refuses NUL (U+0000) in text, and a lone UTF-16 surrogate (U+D800–U+DFFF, which JSON's
`\\ud800` escape yields) cannot be encoded as UTF-8 by any database driver: either is a 500 when
it reaches a query. DRF's CharField already refuses both (its ProhibitNull/Surrogate validators),
and so do Django's form fields for NUL. `text_storable_check` does the same for text that the
plain views and the services take as it comes, and `unstorable_text_middleware` for the URL,
whose path and query parameters end up in lookups too.
"""

from __future__ import annotations

import re

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.utils.decorators import sync_and_async_middleware

from project.api_errors import json_error
from project.unavailable import wants_json

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnstorableText(ValueError):
    """`message` names the field and the character."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def unstorable_character(value: str) -> str | None:
    """The first character of `value` no database can store, as `U+XXXX`; None when all can be."""
    found = _UNSTORABLE.search(value)
    return f"U+{ord(found.group()):04X}" if found else None


def text_storable_check(value: str, *, field: str) -> str:
    """`value` unchanged, or UnstorableText naming `field` and the character."""
    character = unstorable_character(value)
    if character is not None:
        raise UnstorableText(
            f"{field} contains a character that cannot be stored ({character}): "
            "NUL characters and lone UTF-16 surrogates are not allowed."
        )
    return value


def _url_refusal(request: HttpRequest) -> HttpResponse | None:
    texts = [("The URL path", request.path)] + [
        (f"Query parameter {name!r}", text)
        for name, values in request.GET.lists()
        for text in (name, *values)
    ]
    for field, text in texts:
        try:
            text_storable_check(text, field=field)
        except UnstorableText as refused:
            try:
                # Resolved here, on the rare refusal: the seed's JSON paths outside /api/.
                request.resolver_match = resolve(request.path_info)
            except Resolver404:
                pass
            if wants_json(request):
                return json_error(400, refused.message, "invalid_characters")
            return HttpResponse(
                refused.message, status=400, content_type="text/plain; charset=utf-8"
            )
    return None


@sync_and_async_middleware
def unstorable_text_middleware(get_response):
    """400 for a URL whose path or query parameters hold NUL or a lone surrogate, before any
    view looks them up (JSON where the request wants JSON, plain text elsewhere). Sync and
    async, so async views (the streams) are not moved to a thread for it."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return _url_refusal(request) or await get_response(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return _url_refusal(request) or get_response(request)

    return middleware
