"""Site-wide pages: the dashboard, the health check and the 404 answer."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from organizations.selectors import organizations_for_user
from project.api_errors import json_error


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    organizations = organizations_for_user(user=request.user)
    return render(request, "dashboard.html", {"organizations": organizations})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # API clients get JSON they can parse; people get a page.
    if request.path.startswith("/api/"):
        return json_error(404, "Not found.", "not_found")
    return render(request, "404.html", status=404)
