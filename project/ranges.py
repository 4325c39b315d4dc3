"""Byte ranges (RFC 9110 §14) for stored files: what a `<video>` needs to seek.

Django's FileResponse always answers the whole file; Chromium asks a video for `Range:
bytes=N-` and will not seek one that answers 200. `ranged_file_response` answers a single range
with 206 and `Content-Range`, an unsatisfiable one with 416, and anything else (no Range, several
ranges, a stale `If-Range`) with the whole file; every answer says `Accept-Ranges: bytes`.

Under daphne the body is an asynchronous iterator whose reads run in a worker thread: the file
streams chunk by chunk without blocking the event loop, instead of being read whole into memory
first, as a synchronous iterator would be (Django's ASGI handler consumes those with one
`sync_to_async(list)`). Under WSGI it is a plain iterator.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import IO

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import http_date

CHUNK_BYTES = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    pass


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte, both included, that a Range header asks of a `size`-byte file;
    None when the whole file is to be sent (no header, one this does not serve, such as several
    ranges). Raises RangeNotSatisfiable for a range that starts past the end."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges, another unit: the whole file is a correct answer
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)  # the last N bytes
        if suffix == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored, as the RFC says
    if start >= size:
        raise RangeNotSatisfiable(header)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


async def _chunks(file: IO[bytes], start: int, length: int) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(file.seek, start)
        remaining = length
        while remaining > 0:
            chunk = await asyncio.to_thread(file.read, min(CHUNK_BYTES, remaining))
            if not chunk:
                break  # the file shrank under us: the client sees a short body, not garbage
            remaining -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(file.close)


def _chunks_sync(file: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    try:
        file.seek(start)
        remaining = length
        while remaining > 0:
            chunk = file.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        file.close()


def ranged_file_response(
    request: HttpRequest,
    *,
    file: IO[bytes],
    size: int,
    modified: float,
    content_type: str,
) -> HttpResponse:
    """Answer `request` with the open `file` (closed by the response), or the range of it the
    request asks for. `modified`: the file's modification time (Unix seconds), for the ETag and
    Last-Modified that `If-Range` is checked against."""
    etag = f'"{size:x}-{int(modified * 1000):x}"'
    last_modified = http_date(modified)
    if_range = request.headers.get("If-Range")
    try:
        wanted = (
            byte_range(request.headers.get("Range"), size)
            if if_range is None or if_range in (etag, last_modified)
            else None
        )
    except RangeNotSatisfiable:
        file.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        return response
    first, last = wanted if wanted is not None else (0, size - 1)
    length = max(0, last - first + 1)
    # The iterator the handler consumes natively: daphne an asynchronous one, WSGI (and the
    # test client) a plain one.
    asynchronous = hasattr(request, "scope")
    response = StreamingHttpResponse(
        _chunks(file, first, length) if asynchronous else _chunks_sync(file, first, length),
        status=206 if wanted is not None else 200,
        content_type=content_type,
    )
    # A body never iterated (HEAD, a client gone before the first byte) closes the file too;
    # FileResponse closes its file the same way.
    response._resource_closers.append(file.close)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["Last-Modified"] = last_modified
    if wanted is not None:
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
    return response
