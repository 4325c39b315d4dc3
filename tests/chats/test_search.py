"""Search over the messages of a user's chats. The module runs on SQLite (the portable
fallback) and, with DATABASE_URL=postgres://…, on PostgreSQL's full-text search; the tests
that only hold for one of them ask for it."""

from __future__ import annotations

import pytest
from django.db import connection

from chats.models import Chat, Message
from chats.search import SearchQueryError, _hit_pattern, message_snippet_html, messages_search

pytestmark = pytest.mark.django_db


@pytest.fixture
def sqlite(db):
    if connection.vendor != "sqlite":
        pytest.skip("the portable fallback runs on SQLite only")


def _chat(user, organization, title="Night shift") -> Chat:
    return Chat.objects.create(user=user, organization=organization, title=title)


def _message(chat, content, role=Message.Role.USER, parent=None) -> Message:
    return Message.objects.create(chat=chat, role=role, content=content, parent=parent)


@pytest.fixture
def alice_chat(alice, organization):
    return _chat(alice, organization)


def _search(user, query, limit=20, offset=0):
    return messages_search(user=user, query=query, limit=limit, offset=offset)


def test_it_finds_messages_with_every_word(alice, alice_chat):
    hit = _message(alice_chat, "The loading dock camera stopped recording at night.")
    _message(alice_chat, "The loading dock is fine.")
    page = _search(alice, "camera dock")
    assert page.count == 1
    [found] = page.hits
    assert (found.chat_id, found.chat_title, found.message_id) == (
        alice_chat.pk,
        "Night shift",
        hit.pk,
    )
    assert found.role == "user"
    assert "<mark>camera</mark>" in found.snippet_html
    assert "<mark>dock</mark>" in found.snippet_html


def test_it_is_case_insensitive(alice, alice_chat):
    _message(alice_chat, "Camera NORTH went dark.", role=Message.Role.ASSISTANT)
    [found] = _search(alice, "north camera").hits
    assert "<mark>Camera</mark>" in found.snippet_html
    assert "<mark>NORTH</mark>" in found.snippet_html


def test_it_searches_every_branch(alice, alice_chat):
    prompt = _message(alice_chat, "Who is on shift?")
    first = _message(alice_chat, "Dana is on shift.", Message.Role.ASSISTANT, prompt)
    second = _message(alice_chat, "Dana and Eli are on shift.", Message.Role.ASSISTANT, prompt)
    alice_chat.current_leaf = second
    alice_chat.save()
    assert {hit.message_id for hit in _search(alice, "dana").hits} == {first.pk, second.pk}


def test_a_blank_title_is_shown_as_new_chat(alice, organization):
    _message(_chat(alice, organization, title=""), "forklift")
    [found] = _search(alice, "forklift").hits
    assert found.chat_title == "New chat"


def test_bob_and_charlie_find_nothing_of_alices(
    alice, bob, charlie, alice_chat, charlie_organization
):
    _message(alice_chat, "secret forklift plan")
    _message(_chat(charlie, charlie_organization, "Charlie's"), "charlie forklift")
    assert _search(bob, "forklift").count == 0
    assert [hit.chat_title for hit in _search(charlie, "forklift").hits] == ["Charlie's"]
    assert _search(alice, "forklift").count == 1


def test_a_chat_of_an_organization_alice_left_is_not_searched(alice, bob, organization):
    _message(_chat(bob, organization), "forklift")
    organization.memberships.filter(user=bob).delete()
    assert _search(bob, "forklift").count == 0


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", "Type a word"),
        ("   ", "Type a word"),
        ("x" * 201, "at most 200 characters"),
        ("fork\x00lift", "U+0000"),
    ],
)
def test_bad_queries_are_refused_in_words(alice, query, words):
    with pytest.raises(SearchQueryError) as refused:
        _search(alice, query)
    assert words in refused.value.message


def test_a_query_of_200_characters_is_allowed(alice, alice_chat):
    assert _search(alice, "x" * 200).count == 0


def test_a_query_of_punctuation_only_finds_nothing(alice, alice_chat):
    _message(alice_chat, "a -- b ?!")
    assert _search(alice, "?! --").count == 0


def test_results_are_paged(alice, alice_chat):
    for n in range(5):
        _message(alice_chat, f"forklift {n}")
    page = _search(alice, "forklift", limit=2, offset=4)
    assert page.count == 5 and len(page.hits) == 1


def test_the_portable_search_is_newest_first_and_finds_parts_of_words(sqlite, alice, alice_chat):
    older = _message(alice_chat, "cameras")
    newer = _message(alice_chat, "camera")
    assert [hit.message_id for hit in _search(alice, "camera").hits] == [newer.pk, older.pk]


def test_postgresql_ranks_the_better_match_first(postgresql, alice, alice_chat):
    better = _message(alice_chat, "forklift forklift forklift battery")
    _message(alice_chat, "the forklift is in the yard with many other things around it")
    assert _search(alice, "forklift").hits[0].message_id == better.pk


def test_postgresql_reads_websearch_syntax(postgresql, alice, alice_chat):
    phrase = _message(alice_chat, "the north camera is dark")
    _message(alice_chat, "the camera north of the dock")
    assert [hit.message_id for hit in _search(alice, '"north camera"').hits] == [phrase.pk]
    assert [hit.message_id for hit in _search(alice, "camera -dock").hits] == [phrase.pk]
    assert _search(alice, "dark or dock").count == 2


def test_postgresql_uses_the_gin_index(postgresql, alice, alice_chat):
    _message(alice_chat, "forklift")
    from django.contrib.postgres.search import SearchQuery, SearchVector

    query = (
        Message.objects.annotate(document=SearchVector("content", config="simple"))
        .filter(document=SearchQuery("forklift", search_type="websearch", config="simple"))
        .values("id")
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = query.explain()
    assert "message_content_search" in plan


def test_the_snippet_escapes_html_and_marks_hits():
    html = message_snippet_html(
        "<script>alert(1)</script> camera & co", _hit_pattern(["camera"], whole_words=False)
    )
    assert html == "&lt;script&gt;alert(1)&lt;/script&gt; <mark>camera</mark> &amp; co"


def test_a_hit_in_the_middle_of_a_long_text_is_shown_with_context():
    text = "word " * 100 + "forklift " + "tail " * 100
    html = message_snippet_html(text, _hit_pattern(["forklift"], whole_words=True))
    assert "<mark>forklift</mark>" in html
    assert html.startswith("…") and html.endswith("…")
    assert len(html.replace("<mark>", "").replace("</mark>", "")) <= 170


def test_a_term_in_markup_is_not_marked_inside_an_entity():
    # "amp" must not be marked inside the escaped "&amp;".
    html = message_snippet_html("a & b amp", _hit_pattern(["amp"], whole_words=False))
    assert html == "a &amp; b <mark>amp</mark>"


# --- the API ---------------------------------------------------------------------------


def test_the_api_lists_hits_paginated(alice_api, alice_chat):
    for n in range(3):
        _message(alice_chat, f"forklift {n}")
    body = alice_api.get("/api/v1/chats/search?q=forklift&limit=2").json()
    assert body["count"] == 3
    assert "offset=2" in body["next"] and body["previous"] is None
    assert set(body["results"][0]) == {
        "chat_id",
        "chat_title",
        "message_id",
        "role",
        "created_at",
        "snippet_html",
    }
    assert "<mark>forklift</mark>" in body["results"][0]["snippet_html"]


def test_the_api_understands_the_old_page_parameters(alice_api, alice_chat):
    for n in range(3):
        _message(alice_chat, f"forklift {n}")
    body = alice_api.get("/api/v1/chats/search?q=forklift&page=2&page_size=2").json()
    assert body["count"] == 3 and len(body["results"]) == 1
    assert "offset=0" in body["previous"] or "offset" not in body["previous"]


def test_the_api_refuses_bad_queries_in_the_error_shape(alice_api):
    for path in [
        "/api/v1/chats/search",
        "/api/v1/chats/search?q=",
        f"/api/v1/chats/search?q={'x' * 201}",
    ]:
        response = alice_api.get(path)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid"
        assert "q" in response.json()["fields"]
    response = alice_api.get("/api/v1/chats/search?q=a%00b")
    assert response.status_code == 400 and response.json()["code"] == "invalid_characters"


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "limit=101", "offset=-1"])
def test_the_api_refuses_bad_paging(alice_api, query):
    response = alice_api.get(f"/api/v1/chats/search?q=forklift&{query}")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_the_api_needs_authentication(client):
    response = client.get("/api/v1/chats/search?q=forklift")
    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_the_api_shows_bob_and_charlie_nothing_of_alices(bob_api, charlie_api, alice_chat):
    _message(alice_chat, "forklift")
    assert bob_api.get("/api/v1/chats/search?q=forklift").json()["count"] == 0
    assert charlie_api.get("/api/v1/chats/search?q=forklift").json()["count"] == 0


def test_the_api_has_a_query_budget(alice_api, alice_chat, django_assert_num_queries):
    for n in range(5):
        _message(alice_chat, f"forklift {n}")
    alice_api.get("/api/v1/chats/search?q=forklift")  # the token's first use writes once
    # token with user, count, page
    with django_assert_num_queries(3):
        assert len(alice_api.get("/api/v1/chats/search?q=forklift").json()["results"]) == 5


def test_the_api_is_in_the_openapi_schema(alice_api):
    schema = alice_api.get("/api/v1/schema").content.decode()
    assert "/api/v1/chats/search" in schema and "/api/v1/chats/{chat_id}/export" in schema


# --- the page --------------------------------------------------------------------------


@pytest.fixture
def alice_client(client, alice, organization):
    client.force_login(alice)
    return client


def test_the_page_needs_login(client):
    response = client.get("/chats/search?q=forklift")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_page_starts_with_an_empty_state(alice_client):
    page = alice_client.get("/chats/search").content.decode()
    assert "Type a word or two to find" in page


def test_the_page_shows_hits_marked_and_escaped(alice_client, alice_chat):
    message = _message(alice_chat, "<b>forklift</b> <script>alert(1)</script>")
    response = alice_client.get("/chats/search?q=forklift")
    page = response.content.decode()
    assert response.status_code == 200
    assert "&lt;b&gt;<mark>forklift</mark>&lt;/b&gt;" in page
    assert "<script>alert(1)" not in page
    assert f'href="/chats/{alice_chat.pk}/?message={message.pk}#message-{message.pk}"' in page
    assert "1–1 of 1 message." in page


def test_the_page_says_when_nothing_matches(alice_client, alice_chat):
    page = alice_client.get("/chats/search?q=forklift").content.decode()
    assert "No messages match “forklift”" in page


def test_the_page_says_what_is_wrong_with_a_query(alice_client):
    response = alice_client.get("/chats/search?q=%20")
    assert response.status_code == 400
    assert "Type a word or two to search your chats for." in response.content.decode()
    response = alice_client.get("/chats/search?q=forklift&offset=x")
    assert response.status_code == 400
    assert "offset must be a whole number" in response.content.decode()


def test_the_page_shows_charlie_nothing_of_alices(
    client, charlie, charlie_organization, alice_chat
):
    _message(alice_chat, "forklift")
    client.force_login(charlie)
    assert "No messages match" in client.get("/chats/search?q=forklift").content.decode()


def test_the_page_links_the_next_page(alice_client, alice_chat):
    for n in range(25):
        _message(alice_chat, f"forklift {n}")
    page = alice_client.get("/chats/search?q=forklift").content.decode()
    assert "1–20 of 25 messages." in page and "?q=forklift&amp;offset=20" in page
    page = alice_client.get("/chats/search?q=forklift&offset=20").content.decode()
    assert "21–25 of 25 messages." in page and "?q=forklift&amp;offset=0" in page


def test_the_chat_list_has_a_search_box(alice_client):
    page = alice_client.get("/chats/").content.decode()
    assert 'action="/chats/search"' in page and 'name="q"' in page


def test_the_page_has_a_query_budget(alice_client, alice_chat, django_assert_num_queries):
    for n in range(5):
        _message(alice_chat, f"forklift {n}")
    # session, user, count, page of hits with their chats' titles
    with django_assert_num_queries(4):
        assert alice_client.get("/chats/search?q=forklift").status_code == 200
