"""Full-text search over the messages of the chats a user may see (every branch).

On PostgreSQL it is the database's full-text search with the `simple` configuration: chats here
are written in whatever language the user types, and `english` would stem and drop stop words
in every other one (and drop "not" and "off", which matter in "camera not recording"). `simple`
only lower-cases words, so a hit is the word typed, which is also what the snippet marks. The
query is read in `websearch` syntax: `"quoted phrase"`, `or`, `-excluded`. Results are ranked
by `ts_rank`, newest first among equals; migration 0003 adds the GIN index this uses.

Elsewhere (SQLite, the laptop default) every word must occur in the message (case-insensitive
substring), newest first.

The snippet is built here, in Python, from the message text: about 160 characters around the
first hit, HTML-escaped, with each hit wrapped in `<mark>`, so it is safe to put in a page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from html import escape

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.utils.safestring import SafeString, mark_safe

from chats.models import Message
from chats.selectors import chats_for_user
from project.text_input import UnstorableText, text_storable_check

SEARCH_QUERY_MAX_CHARS = 200
SEARCH_CONFIG = "simple"
SNIPPET_CHARS = 160
# How much of the snippet comes before the first hit, so the hit is read in its context.
SNIPPET_LEAD_CHARS = 50

# Words of the websearch syntax that are operators, not words to find.
_OPERATORS = {"or"}


class SearchQueryError(ValueError):
    """`message` says what is wrong with the query, in words a person can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SearchHit:
    chat_id: int
    chat_title: str
    message_id: int
    role: str
    created_at: datetime
    snippet_html: SafeString


@dataclass(frozen=True)
class SearchPage:
    count: int
    hits: list[SearchHit]


def search_query_clean(query: str) -> str:
    """The query without surrounding blanks, or SearchQueryError."""
    try:
        text_storable_check(query, field="The search")
    except UnstorableText as refused:
        raise SearchQueryError(refused.message) from None
    query = query.strip()
    if not query:
        raise SearchQueryError("Type a word or two to search your chats for.")
    if len(query) > SEARCH_QUERY_MAX_CHARS:
        raise SearchQueryError(
            f"A search can be at most {SEARCH_QUERY_MAX_CHARS} characters long "
            f"(this one has {len(query)})."
        )
    return query


def search_terms(query: str) -> list[str]:
    """The words a message must contain: operators and `-excluded` words left out."""
    terms = []
    for token in query.split():
        if token.startswith("-"):
            continue
        words = re.findall(r"\w+", token)
        terms.extend(word for word in words if word.lower() not in _OPERATORS)
    return list(dict.fromkeys(terms))


def _matches_postgresql(messages: QuerySet[Message], query: str) -> QuerySet[Message]:
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    # The same expression as the index of migration 0003, or the index is not used.
    vector = SearchVector("content", config=SEARCH_CONFIG)
    search_query = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    return (
        messages.annotate(document=vector)
        .filter(document=search_query)
        .annotate(rank=SearchRank(vector, search_query))
        .order_by("-rank", "-created_at", "-id")
    )


def _matches_portable(messages: QuerySet[Message], terms: list[str]) -> QuerySet[Message]:
    condition = Q()
    for term in terms:
        condition &= Q(content__icontains=term)
    return messages.filter(condition).order_by("-created_at", "-id")


def _hit_pattern(terms: list[str], *, whole_words: bool) -> re.Pattern | None:
    if not terms:
        return None
    # Longest first, so "camera" is marked whole where "cam" is a term too.
    alternatives = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b" if whole_words else alternatives, re.IGNORECASE)


def message_snippet_html(content: str, pattern: re.Pattern | None) -> SafeString:
    """About SNIPPET_CHARS of `content` around its first hit, escaped, hits in <mark>."""
    first = pattern.search(content) if pattern else None
    start = 0
    if first and first.start() > SNIPPET_LEAD_CHARS:
        start = first.start() - SNIPPET_LEAD_CHARS
        # Begin at a word, not in the middle of one.
        blank = content.find(" ", start, first.start())
        start = blank + 1 if blank != -1 else start
    end = min(len(content), start + SNIPPET_CHARS)
    if first and first.end() > end:
        end = first.end()
    if end < len(content):
        blank = content.rfind(" ", max(start, first.end() if first else start), end)
        end = blank if blank != -1 else end
    window = content[start:end]
    parts = ["…" if start > 0 else ""]
    position = 0
    for hit in pattern.finditer(window) if pattern else ():
        parts.append(escape(window[position : hit.start()]))
        parts.append(f"<mark>{escape(hit.group())}</mark>")
        position = hit.end()
    parts.append(escape(window[position:]))
    parts.append("…" if end < len(content) else "")
    return mark_safe("".join(parts))  # noqa: S308 (every piece of text is escaped above)


def messages_search(
    *, user: AbstractBaseUser | AnonymousUser, query: str, limit: int, offset: int
) -> SearchPage:
    """Messages of the user's chats matching `query`, best first; SearchQueryError for a
    query that is empty, too long or holds characters no database can store."""
    query = search_query_clean(query)
    terms = search_terms(query)
    messages = Message.objects.filter(chat__in=chats_for_user(user=user)).annotate(
        chat_title=F("chat__title")
    )
    postgresql = connection.vendor == "postgresql"
    if postgresql:
        matches = _matches_postgresql(messages, query)
    elif terms:
        matches = _matches_portable(messages, terms)
    else:
        # Only punctuation or excluded words: nothing to find (PostgreSQL agrees).
        return SearchPage(count=0, hits=[])
    count = matches.count()
    page = matches.only("id", "chat_id", "role", "content", "created_at")[offset : offset + limit]
    pattern = _hit_pattern(terms, whole_words=postgresql)
    hits = [
        SearchHit(
            chat_id=message.chat_id,
            chat_title=message.chat_title or "New chat",
            message_id=message.pk,
            role=message.role,
            created_at=message.created_at,
            snippet_html=message_snippet_html(message.content, pattern),
        )
        for message in page
    ]
    return SearchPage(count=count, hits=hits)
