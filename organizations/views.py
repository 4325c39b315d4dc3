"""Pages: the dashboard and the API-token page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from organizations.selectors import api_tokens_for_user, organizations_for_user
from organizations.services import api_token_regenerate, api_token_revoke


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    # A freshly made token is passed through the session once, then forgotten.
    new_token = request.session.pop("new_api_token", None)
    return render(
        request,
        "organizations/tokens.html",
        {"tokens": api_tokens_for_user(user=request.user), "new_token": new_token},
    )


@login_required
@require_POST
def token_regenerate(request: HttpRequest) -> HttpResponse:
    _, raw = api_token_regenerate(user=request.user)
    request.session["new_api_token"] = raw
    return redirect("tokens")


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    api_token_revoke(user=request.user, token_id=token_id)
    return redirect("tokens")


@login_required
def organizations_page(request: HttpRequest) -> HttpResponse:
    organizations = organizations_for_user(user=request.user).prefetch_related("memberships__user")
    return render(request, "organizations/list.html", {"organizations": organizations})
