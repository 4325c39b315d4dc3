"""Who may read `GET /metrics`: a request with the METRICS_TOKEN, or one from an address in
METRICS_ALLOWED_NETWORKS (by default this machine only).

The address is the client's as `project.client_address` computed it (through the proxies in
DJANGO_TRUSTED_PROXIES). A request carrying X-Forwarded-For, Forwarded or X-Real-IP from a peer
that is not a trusted proxy came through a proxy we cannot see past: its REMOTE_ADDR is the
proxy's (often 127.0.0.1), not the client's. Such a request needs the token.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from organizations.authentication import bearer_token_from_header
from project.api_errors import json_error
from project.client_address import came_through_untrusted_proxy


def _from_allowed_network(request: HttpRequest) -> bool:
    if came_through_untrusted_proxy(request):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


def metrics_access_refusal(request: HttpRequest) -> JsonResponse | None:
    """None when `request` may read the metrics; otherwise the 401/403 answer to send."""
    token = settings.METRICS_TOKEN
    given = bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION"))
    if token and given is not None:
        if hmac.compare_digest(given.encode(), token.encode()):
            return None
        return json_error(401, "The metrics token is not right.", "invalid_token")
    if _from_allowed_network(request):
        return None
    if token:
        response = json_error(
            401,
            "Send Authorization: Bearer <METRICS_TOKEN> to read the metrics.",
            "not_authenticated",
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    return json_error(
        403,
        "Metrics are served only to METRICS_ALLOWED_NETWORKS (through no proxy, or through "
        "DJANGO_TRUSTED_PROXIES), or with METRICS_TOKEN.",
        "forbidden",
    )
