"""The one pagination style of every API list: `?limit=&offset=`, answered as
`{"count", "next", "previous", "results"}`.

It is REST_FRAMEWORK's DEFAULT_PAGINATION_CLASS; a list with other page sizes subclasses it.
Unlike DRF's LimitOffsetPagination, a malformed or out-of-range `limit`/`offset` is a 400 in
the API's error shape, not silently replaced (a client that asked for something else must
know), and `offset` is bounded so that no database is asked for an offset it cannot store.

`page` and `page_size` are still understood, for the callers of the event lists written when
those were page-numbered: `page_size` stands for `limit`, `page` for
`offset = (page - 1) * limit`. A page past the end is empty, as an offset past the end is (it
was a 404). The `next` and `previous` links are always in limit/offset form.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.utils.urls import remove_query_param

# Far beyond any list here, far below what SQLite's and PostgreSQL's 64-bit OFFSET can hold.
MAX_OFFSET = 1_000_000_000


def _whole_number(request, name: str, *, minimum: int, maximum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not minimum <= int(raw) <= maximum:
        raise ValidationError({name: [f"A whole number from {minimum} to {maximum}."]})
    return int(raw)


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200
    legacy_limit_query_param = "page_size"
    legacy_page_query_param = "page"

    def get_limit(self, request) -> int:
        for name in (self.limit_query_param, self.legacy_limit_query_param):
            limit = _whole_number(request, name, minimum=1, maximum=self.max_limit)
            if limit is not None:
                return limit
        return self.default_limit

    def get_offset(self, request) -> int:
        offset = _whole_number(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET)
        if offset is not None:
            return offset
        page = _whole_number(
            request, self.legacy_page_query_param, minimum=1, maximum=MAX_OFFSET // self.max_limit
        )
        return 0 if page is None else (page - 1) * self.limit

    def _without_legacy_parameters(self, url: str | None) -> str | None:
        for name in (self.legacy_limit_query_param, self.legacy_page_query_param):
            url = url and remove_query_param(url, name)
        return url

    def get_next_link(self) -> str | None:
        return self._without_legacy_parameters(super().get_next_link())

    def get_previous_link(self) -> str | None:
        return self._without_legacy_parameters(super().get_previous_link())

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            bounds = (
                {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit}
                if parameter["name"] == self.limit_query_param
                else {"minimum": 0, "maximum": MAX_OFFSET, "default": 0}
            )
            parameter["schema"].update(bounds)
        return [
            *parameters,
            {
                "name": self.legacy_limit_query_param,
                "required": False,
                "in": "query",
                "deprecated": True,
                "description": "Old name of `limit`.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
            {
                "name": self.legacy_page_query_param,
                "required": False,
                "in": "query",
                "deprecated": True,
                "description": "Page number in pages of `limit` items: offset = (page - 1) × "
                "limit.",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_OFFSET // self.max_limit,
                },
            },
        ]
