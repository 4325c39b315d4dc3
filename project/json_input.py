"""JSON request bodies, refused before they are parsed when too large or nested too deep.

Python's json module recurses once per level of nesting: `[[[[…]]]]` a few thousand levels deep
raises RecursionError (a 500) where a parse error belongs, and anything that walks the result
later recurses as deep again. So the size is checked first, then the depth is counted on the raw
bytes (strings blanked out, no recursion), and only then is the body parsed.

One helper for every endpoint: DRF views through `project.parsers.BoundedJSONParser`, the plain
views (the chat stream, ingest) through `request_json`. Errors carry the HTTP status and the
stable code of the one error shape (`project.api_errors`).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.http.request import RawPostDataException

# A JSON string, escapes included (what is inside one never nests), or an unterminated one up to
# the end. Possessive, so an attacker's unterminated
# string full of escaped quotes is scanned once: the backtracking form took hours on 1 MB (every
# escaped quote started a new attempt over the rest of the body, holding the GIL throughout).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
# +1 for an opening bracket, -1 for a closing one (indexed by byte value).
_NESTING_STEP = [0] * 256
for _byte in b"[{":
    _NESTING_STEP[_byte] = 1
for _byte in b"]}":
    _NESTING_STEP[_byte] = -1


class JsonBodyError(ValueError):
    """A body refused before or while parsing: `status` (400 or 413) and `code` for the answer."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def json_nesting_depth(raw: bytes) -> int:
    """How deep the arrays and objects of `raw` nest, counted without parsing or recursion."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_NESTING_STEP.__getitem__, brackets))))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_large(limit: int) -> JsonBodyError:
    return JsonBodyError(413, f"The request body is larger than {limit} bytes.", "too_large")


def json_loads_bounded(raw: bytes, *, max_bytes: int | None = None) -> Any:
    """Parse `raw` as JSON once it is known to be at most `max_bytes` long (default
    API_JSON_MAX_BYTES) and to nest at most API_JSON_MAX_DEPTH levels; else JsonBodyError."""
    limit = settings.API_JSON_MAX_BYTES if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise _too_large(limit)
    max_depth = settings.API_JSON_MAX_DEPTH
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the count.
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_nesting_depth(raw) > max_depth:
        raise JsonBodyError(
            400, f"The JSON body nests more than {max_depth} levels deep.", "too_deep"
        )
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise JsonBodyError(400, "The request body is not valid JSON.", "malformed") from None


def request_json(request: HttpRequest, *, max_bytes: int | None = None) -> Any:
    """The request's JSON body; a body over the limit is refused by its Content-Length before
    it is read, and by its length after (a client may send no or a false Content-Length)."""
    limit = settings.API_JSON_MAX_BYTES if max_bytes is None else max_bytes
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise _too_large(limit)
    try:
        body = request.body
    except (RequestDataTooBig, RawPostDataException):
        # Over DATA_UPLOAD_MAX_MEMORY_SIZE, or already consumed as a stream.
        raise _too_large(limit) from None
    return json_loads_bounded(body, max_bytes=limit)
