"""One JSON error shape for every API answer that is not a success.

`{"error": "<sentence a person can act on>", "code": "<stable machine code>"}`, plus `fields`
for validation errors. DRF views get it through the exception handler; plain views (SSE,
ingest) through `json_error`. Redis being away is a 503 with `Retry-After` (see
`project.unavailable`), in DRF views as everywhere else.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from project.unavailable import REDIS_UNAVAILABLE_ERRORS, unavailable_response


def json_error(status_code: int, message: str, code: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, "code": code, **extra}, status=status_code)


def method_not_allowed(allowed: str, message: str) -> JsonResponse:
    """405 for the plain views, with the `Allow` header HTTP requires (DRF's views set it)."""
    response = json_error(405, message, "method_not_allowed")
    response["Allow"] = allowed
    return response


def object_body(request) -> dict:
    """A DRF request's JSON body, which must be an object (a list or a number is a 400)."""
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"body": ["The body must be a JSON object."]})
    return request.data


def api_validation_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A service's Django ValidationError as DRF's, so it answers 400 in the shape above."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({"non_field_errors": exc.messages})


def _flatten(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    if isinstance(detail, dict):
        return " ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    return str(detail)


def json_exception_handler(exc: Exception, context: dict) -> Response | None:
    # Imported here: rest_framework.views loads the authentication classes, which use json_error.
    from rest_framework.views import exception_handler

    if isinstance(exc, REDIS_UNAVAILABLE_ERRORS):
        # e.g. a throttle or rate limit whose counter lives in the cache.
        return unavailable_response(context["request"], exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = {"error": _flatten(exc.detail), "code": "invalid", "fields": exc.detail}
    elif isinstance(exc, exceptions.ParseError):
        body = {"error": f"The request body is not valid JSON: {exc.detail}", "code": "malformed"}
    elif isinstance(exc, exceptions.APIException):
        body = {
            "error": _flatten(exc.detail),
            "code": exc.get_codes() if isinstance(exc.get_codes(), str) else "error",
        }
    else:
        body = {"error": "Request failed.", "code": "error"}
    if response.status_code == status.HTTP_404_NOT_FOUND:
        body = {"error": "Not found.", "code": "not_found"}
    response.data = body
    return response
