"""JSON API: search the messages of your chats, and export a chat (DRF)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.export import (
    EXPORT_FORMATS,
    chat_export_filename,
    chat_export_json,
    chat_export_markdown,
)
from chats.search import SEARCH_QUERY_MAX_CHARS, SearchQueryError, messages_search
from chats.selectors import chat_get_for_user
from project.pagination import Pagination


class SearchHitSerializer(serializers.Serializer):
    chat_id = serializers.IntegerField()
    chat_title = serializers.CharField()
    message_id = serializers.IntegerField()
    role = serializers.CharField()
    created_at = serializers.DateTimeField()
    snippet_html = serializers.CharField(
        help_text="About 160 characters around the first hit, HTML-escaped, hits in <mark>."
    )


class SearchPagination(Pagination):
    default_limit = 20
    max_limit = 100


class ChatSearchApi(APIView):
    pagination_class = SearchPagination

    @extend_schema(
        summary="Search the messages of your chats",
        description="Every message of every branch of the chats you can see. On PostgreSQL "
        'the query is read in web-search syntax (`"a phrase"`, `or`, `-word`) and results '
        "are ranked; elsewhere every word must occur, newest first.",
        parameters=[
            OpenApiParameter(
                "q",
                OpenApiTypes.STR,
                required=True,
                description=f"What to search for: 1 to {SEARCH_QUERY_MAX_CHARS} characters.",
            )
        ],
        responses=SearchHitSerializer(many=True),
    )
    def get(self, request):
        paginator = self.pagination_class()
        # In this order: the old `page` parameter's offset is counted in pages of `limit`.
        paginator.limit = paginator.get_limit(request)
        paginator.offset = paginator.get_offset(request)
        try:
            page = messages_search(
                user=request.user,
                query=request.query_params.get("q", ""),
                limit=paginator.limit,
                offset=paginator.offset,
            )
        except SearchQueryError as exc:
            raise ValidationError({"q": [exc.message]}) from None
        paginator.request, paginator.count = request, page.count
        return paginator.get_paginated_response(SearchHitSerializer(page.hits, many=True).data)


class _FormatIsOurs(DefaultContentNegotiation):
    """`?format=` names the export's format here, not one of DRF's renderers (which would
    answer an unknown one with a 404): answers, errors included, are rendered as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ChatExportApi(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatIsOurs

    @extend_schema(
        summary="Export a chat",
        description="`markdown` (the default): the branch the chat shows, as `## You` and "
        "`## Assistant` sections. `json`: the chat and every message of every branch, oldest "
        "first, each with its `parent`. Sent as an attachment named after the title.",
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=list(EXPORT_FORMATS)),
        ],
        responses={
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT),
        },
    )
    def get(self, request, chat_id: int):
        export_format = request.query_params.get("format", "markdown")
        if export_format not in EXPORT_FORMATS:
            raise ValidationError({"format": [f"Choose one of: {', '.join(EXPORT_FORMATS)}."]})
        chat = chat_get_for_user(user=request.user, chat_id=chat_id)
        if chat is None:
            raise NotFound()
        if export_format == "markdown":
            response = HttpResponse(
                chat_export_markdown(chat), content_type="text/markdown; charset=utf-8"
            )
        else:
            response = Response(chat_export_json(chat))
        filename = chat_export_filename(chat, export_format=export_format)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
