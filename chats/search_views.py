"""The search page: the same selector as `GET /api/v1/chats/search`, as HTML."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from chats.search import SEARCH_QUERY_MAX_CHARS, SearchQueryError, messages_search
from project.pagination import MAX_OFFSET
from project.query_params import ParamError, int_param

RESULTS_PER_PAGE = 20


@login_required
@require_GET
def chat_search_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q")
    context = {"query": query or "", "query_max_chars": SEARCH_QUERY_MAX_CHARS}
    if query is None:
        return render(request, "chats/search.html", context)
    try:
        offset = int_param(request.GET.get("offset", "0"), name="offset", maximum=MAX_OFFSET)
        page = messages_search(
            user=request.user, query=query, limit=RESULTS_PER_PAGE, offset=offset
        )
    except (ParamError, SearchQueryError) as exc:
        return render(request, "chats/search.html", {**context, "error": exc.message}, status=400)

    def page_url(page_offset: int) -> str:
        return "?" + urlencode({"q": query, "offset": page_offset})

    following = offset + RESULTS_PER_PAGE
    context |= {
        "page": page,
        "first_shown": offset + 1,
        "last_shown": offset + len(page.hits),
        "previous_url": page_url(max(0, offset - RESULTS_PER_PAGE)) if offset > 0 else None,
        "next_url": page_url(following) if following < page.count else None,
    }
    return render(request, "chats/search.html", context)
