"""Site-wide pages: the dashboard, health (liveness, readiness, metrics) and the error answers."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from organizations.selectors import organizations_for_user
from project.api_errors import json_error
from project.health import readiness
from project.metrics_access import metrics_access_refusal
from project.unavailable import wants_json


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    organizations = organizations_for_user(user=request.user)
    return render(request, "dashboard.html", {"organizations": organizations})


@never_cache
@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    # Liveness: the process answers. Nothing it depends on is asked (that is /readyz), so a
    # database outage never gets every server restarted.
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    report = await readiness()
    response = JsonResponse(report, status=200 if report["status"] == "ok" else 503)
    # A 503 here is an answer, not a server error: project.health logs each change of what is
    # failing once, where Django would log every probe (every few seconds) at ERROR.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@never_cache
@require_safe
async def metrics(request: HttpRequest) -> HttpResponse:
    refusal = metrics_access_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


# The error handlers (project/urls.py): API clients, and the seed's JSON chat paths, get the one
# JSON error shape they can parse; people get a page.


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not wants_json(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        # Raised by request.body over DATA_UPLOAD_MAX_MEMORY_SIZE: too large, not malformed.
        return json_error(
            413,
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            "too_large",
        )
    return json_error(400, "The request could not be understood.", "bad_request")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not wants_json(request):
        return defaults.permission_denied(request, exception)
    return json_error(403, "You do not have permission to do this.", "forbidden")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if wants_json(request):
        return json_error(404, "Not found.", "not_found")
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django has logged the exception with its traceback; the client gets no detail of it.
    if not wants_json(request):
        return defaults.server_error(request)
    return json_error(
        500, "The server failed to answer this request; the error is logged.", "server_error"
    )
