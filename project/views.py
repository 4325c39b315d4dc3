"""Site-wide pages: the dashboard, health (liveness, readiness, metrics) and the 404 answer."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from organizations.selectors import organizations_for_user
from project.api_errors import json_error
from project.health import readiness
from project.metrics_access import metrics_access_refusal


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


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # API clients get JSON they can parse; people get a page.
    if request.path.startswith("/api/"):
        return json_error(404, "Not found.", "not_found")
    return render(request, "404.html", status=404)
