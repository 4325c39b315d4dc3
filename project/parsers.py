"""The API's JSON parser: DRF's, with the size and depth limits of `project.json_input`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from project.json_input import JsonBodyError, json_loads_bounded


class JsonBodyRefused(exceptions.APIException):
    """A JsonBodyError as a DRF exception: its status (400/413), message and code."""

    def __init__(self, error: JsonBodyError):
        super().__init__(detail=error.message, code=error.code)
        self.status_code = error.status


class BoundedJSONParser(BaseParser):
    # Not a JSONParser subclass on purpose: DRF hands those `request.body`, which Django refuses
    # (and logs at ERROR) past DATA_UPLOAD_MAX_MEMORY_SIZE before our limit could answer; a plain
    # parser gets the request stream and reads one byte more than the limit, whatever was sent.
    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.API_JSON_MAX_BYTES
        # One byte over the limit is enough to know the body is too large.
        raw = stream.read(limit + 1)
        try:
            return json_loads_bounded(raw, max_bytes=limit)
        except JsonBodyError as error:
            raise JsonBodyRefused(error) from None
