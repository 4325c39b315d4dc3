"""The API's published contract: the plumbing behind the OpenAPI schema at /api/v1/schema.

Views describe themselves with `@extend_schema` beside their code; this module adds what is the
same everywhere, so no view has to repeat it and none can forget it:

- the one error shape (`project.api_errors`) as the `Error` component, on every error response
  of every operation, with the error statuses each operation can answer (401/403 when it needs
  authentication, 404 when its path names an object, 400 when it takes input, 429 when it is
  throttled, 503 when Redis is away);
- the bearer-token scheme of `organizations.authentication` (the session one is built in);
- the plain (non-DRF) views, such as the chat SSE stream and the frame ingest: a Django view has
  nothing spectacular can inspect, so an app describes one with a documentation-only APIView
  registered by `@documents(view)` (see `chats/openapi.py`, `cameras/openapi.py`), and
  `add_plain_views` puts it into the schema at each URL the view is routed at.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import EndpointEnumerator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers
from rest_framework.views import APIView

# The apps' schema modules: documentation of plain views, serializer extensions. They are
# imported when the schema is built.
DOCUMENTATION_MODULES = ("chats.openapi", "cameras.openapi", "events.openapi")
API_PREFIX = "/api/v1/"

_documented_views: dict[Callable, type] = {}


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API (project/api_errors.py)."""

    error = serializers.CharField(help_text="A sentence a person can act on.")
    code = serializers.CharField(
        help_text="A stable machine-readable code, e.g. `invalid`, `not_found`, `rate_limited`."
    )
    fields = serializers.DictField(
        required=False,
        help_text="For validation errors (`code` = `invalid`): the messages of each field.",
    )


ERROR_DESCRIPTIONS = {
    "400": "The input is malformed or invalid (`fields` names what is wrong).",
    "401": "Not authenticated, or the token is invalid or revoked.",
    "403": "Authenticated, but not allowed (role, or a session request without CSRF token).",
    "404": "No such object among yours.",
    "409": "Conflicts with the object's current state.",
    "413": "The request body is larger than API_JSON_MAX_BYTES (ingest: CAMERA_INGEST_MAX_BYTES).",
    "415": "The request body is not JSON.",
    "429": "Too many requests: wait the `Retry-After` seconds.",
    "503": "A service the request needs (Redis) is unavailable: retry after `Retry-After`.",
}
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before retrying.",
    }
}


class PlainViewDocumentation(APIView):
    """Base of the documentation-only views: never routed, their methods (empty) carry the
    `@extend_schema` of the plain view's methods. Authentication and permissions are the API's
    defaults, which the plain views apply too (`organizations.authentication.api_user_required`)."""


def documents(*plain_views: Callable):
    """Class decorator: this PlainViewDocumentation describes `plain_views` in the schema."""

    def register(documentation: type[PlainViewDocumentation]) -> type[PlainViewDocumentation]:
        for view in plain_views:
            _documented_views[view] = documentation
        return documentation

    return register


def _plain_endpoints(patterns, prefix: str, enumerator: EndpointEnumerator) -> list[tuple]:
    endpoints = []
    for pattern in patterns:
        path_regex = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            endpoints += _plain_endpoints(pattern.url_patterns, path_regex, enumerator)
        elif isinstance(pattern, URLPattern) and pattern.callback in _documented_views:
            callback = _documented_views[pattern.callback].as_view()
            path = enumerator.get_path_from_regex(path_regex)
            for method in enumerator.get_allowed_methods(callback):
                endpoints.append((path, path_regex, method, callback))
    return endpoints


def add_plain_views(endpoints: list[tuple]) -> list[tuple]:
    """Preprocessing hook: the documented plain views join the DRF endpoints."""
    for module in DOCUMENTATION_MODULES:
        import_module(module)
    enumerator = EndpointEnumerator()
    return endpoints + _plain_endpoints(get_resolver().url_patterns, "", enumerator)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "organizations.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: POST /api/v1/auth/token, or the Tokens page.",
        }


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer, direction) -> str:
        # Views keep their input serializers as inner classes (`ChatListApi.InputSerializer`):
        # name those after their view (`ChatListInput`), so that they cannot collide.
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if outer:
            return outer.removesuffix("Api") + inner.removesuffix("Serializer")
        return super().get_serializer_name(serializer, direction)

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        # The seed's own paths (/chats/…) serve the same views as their /api/v1 twins.
        return operation_id if self.path.startswith(API_PREFIX) else f"seed_{operation_id}"

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        responses = operation["responses"]
        for status in self._error_statuses(operation):
            responses.setdefault(status, {"description": ERROR_DESCRIPTIONS[status]})
        for status, response in responses.items():
            if int(status) >= 400:
                response["content"] = {"application/json": {"schema": error}}
                if status in ("429", "503"):
                    response["headers"] = RETRY_AFTER
        return operation

    def _error_statuses(self, operation: dict) -> list[str]:
        statuses = ["503"]
        if any(requirement for requirement in operation.get("security", [])):
            statuses += ["401", "403"]
        parameters = operation.get("parameters", [])
        if any(parameter["in"] == "path" for parameter in parameters):
            statuses.append("404")
        if "requestBody" in operation or any(p["in"] == "query" for p in parameters):
            statuses.append("400")
        if "requestBody" in operation:
            statuses.append("413")  # API_JSON_MAX_BYTES (project/json_input.py)
            if not isinstance(self.view, PlainViewDocumentation):
                # DRF's parsers refuse other media types; plain views read the body as JSON.
                statuses.append("415")
        if self.view.get_throttles():
            statuses.append("429")
        return statuses
