"""Bad input anywhere in the API is a JSON 4xx in the one error shape, and writes nothing.

The inputs that answered 500 (or an HTML 400) before, and a few more of each general kind:
JSON nested too deep or too large, text the database cannot store (NUL, lone surrogates),
numbers and times out of bounds, NUL in the URL. Run once with DATABASE_URL pointing at
PostgreSQL too: NUL is refused by PostgreSQL only, so there it is the database that would fail.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import path

from cameras.models import Camera
from cameras.services import camera_create
from chats.models import Chat, Message
from chats.services import chat_create, message_send
from events.models import CameraSession, DetectionEvent
from organizations.models import Membership, Organization
from project.json_input import json_nesting_depth
from tests.cameras.conftest import jpeg_b64, now_ms

pytestmark = pytest.mark.django_db

DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_IN_OBJECT = b'{"title": "x", "prompt": "hi", "extra": ' + DEEP + b"}"
INGEST = "/api/v1/actions/actions/send"


def rows() -> dict[str, int]:
    models = (Chat, Message, Camera, DetectionEvent, CameraSession, Organization, Membership)
    return {model.__name__: model.objects.count() for model in models}


def send(client, method: str, url: str, body: bytes | str | dict | None = None):
    raw = body if isinstance(body, bytes | str) or body is None else json.dumps(body)
    return getattr(client, method)(url, raw, content_type="application/json")


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    answer = json.loads(response.content)
    assert isinstance(answer["error"], str) and answer["error"]
    if code is not None:
        assert answer["code"] == code, answer
    return answer


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization, title="Kept")


@pytest.fixture
def push_camera(organization):
    return camera_create(organization=organization, name="Webcam", source="push:")


@pytest.fixture(autouse=True)
def _fast_builtin(settings):
    settings.ASSISTANT_BACKEND = "builtin"
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0


# --- JSON depth and size, before parsing ---------------------------------------------------


def _body_endpoints(chat, camera) -> list[tuple[str, str]]:
    return [
        ("post", "/api/v1/chats"),
        ("patch", f"/api/v1/chats/{chat.pk}"),
        ("post", "/api/v1/cameras"),
        ("patch", f"/api/v1/cameras/{camera.public_id}"),
        ("post", f"/chats/{chat.pk}/messages"),  # the seed's streaming path
        ("post", f"/api/v1/chats/{chat.pk}/messages"),
        ("post", INGEST),
    ]


@pytest.mark.parametrize("body", [DEEP, DEEP_IN_OBJECT, b'{"a":' * 40_000 + b"1" + b"}" * 40_000])
def test_json_nested_too_deep_is_a_400_everywhere_and_writes_nothing(
    alice_api, chat, push_camera, body
):
    before = rows()
    for method, url in _body_endpoints(chat, push_camera):
        answer = assert_json_error(send(alice_api, method, url, body), 400, "too_deep")
        assert "32 levels" in answer["error"], (url, answer)
    assert rows() == before
    assert Chat.objects.get(pk=chat.pk).title == "Kept"


def test_nesting_up_to_the_limit_is_accepted(alice_api):
    extra = json.loads(b"[" * 31 + b"]" * 31)
    response = send(alice_api, "post", "/api/v1/chats", {"title": "Deep enough", "x": extra})
    assert response.status_code == 201, response.content


def test_brackets_inside_strings_do_not_count_as_nesting(alice_api, chat):
    title = '[{"' * 40
    response = send(alice_api, "post", "/api/v1/chats", {"title": title})
    assert response.status_code == 201, response.content
    assert response.json()["title"] == title


def test_the_depth_is_counted_without_recursion():
    assert json_nesting_depth(b'{"a": [1, {"b": "]]]]"}], "c": "\\"[[["}') == 3
    assert json_nesting_depth(b"[" * 100_000) == 100_000
    assert json_nesting_depth(b"1") == 0


@pytest.mark.timeout(20)
def test_an_unterminated_string_of_escaped_quotes_is_counted_in_one_pass(client):
    # With a backtracking pattern such a body held the GIL for minutes (32 KB) to hours (1 MB):
    # a request anyone may send to the token endpoint froze every stream in the process.
    evil = b"[" * 33 + b'"' + b'\\"' * (512 * 1024)
    assert json_nesting_depth(evil) == 33
    response = client.post(
        "/api/v1/auth/token", data=evil[: 512 * 1024], content_type="application/json"
    )
    assert_json_error(response, 400, "too_deep")


def test_a_five_megabyte_chat_body_is_a_json_413_not_an_html_400(alice_api, chat):
    huge = json.dumps({"prompt": "x" * (5 * 1024 * 1024)})
    before = rows()
    for url in (f"/chats/{chat.pk}/messages", f"/api/v1/chats/{chat.pk}/messages"):
        assert_json_error(send(alice_api, "post", url, huge), 413, "too_large")
    assert_json_error(send(alice_api, "post", "/api/v1/chats", huge), 413, "too_large")
    assert_json_error(send(alice_api, "patch", f"/api/v1/chats/{chat.pk}", huge), 413, "too_large")
    assert rows() == before


def test_a_body_past_djangos_upload_limit_is_refused_by_ours_without_an_error_log(
    alice_api, caplog
):
    # DRF hands JSONParser subclasses request.body, which Django refuses past
    # DATA_UPLOAD_MAX_MEMORY_SIZE with an ERROR log and its own limit in the message.
    huge = json.dumps({"title": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    answer = assert_json_error(send(alice_api, "post", "/api/v1/chats", huge), 413, "too_large")
    assert f"{settings.API_JSON_MAX_BYTES} bytes" in answer["error"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@override_settings(API_JSON_MAX_BYTES=2048)
def test_the_size_limit_is_a_setting_and_says_the_limit(alice_api):
    answer = assert_json_error(
        send(alice_api, "post", "/api/v1/chats", {"title": "x" * 3000}), 413, "too_large"
    )
    assert "2048 bytes" in answer["error"]


@pytest.mark.parametrize("body", [b"NaN", b'{"title": Infinity}', b'{"title": "x"', b"\xff"])
def test_bodies_that_are_not_json_are_malformed(alice_api, body):
    assert_json_error(send(alice_api, "post", "/api/v1/chats", body), 400)


# --- text the database cannot store ---------------------------------------------------------

UNSTORABLE = ["\ud800", "a\udfffb", "\x00", "before\x00after"]


@pytest.mark.parametrize("text", UNSTORABLE)
def test_a_prompt_it_cannot_store_is_a_400_naming_the_prompt(alice_api, chat, text):
    before = rows()
    for url in (f"/chats/{chat.pk}/messages", f"/api/v1/chats/{chat.pk}/messages"):
        answer = assert_json_error(
            send(alice_api, "post", url, {"prompt": text}), 400, "invalid_characters"
        )
        assert answer["error"].startswith("The prompt contains a character that cannot be stored")
    assert rows() == before


@pytest.mark.parametrize("text", UNSTORABLE)
def test_a_title_it_cannot_store_is_a_400_naming_the_title(alice_api, chat, text):
    before = rows()
    answer = assert_json_error(
        send(alice_api, "patch", f"/api/v1/chats/{chat.pk}", {"title": text}), 400, "invalid"
    )
    assert list(answer["fields"]) == ["title"]
    answer = assert_json_error(
        send(alice_api, "post", "/api/v1/chats", {"title": text}), 400, "invalid"
    )
    assert list(answer["fields"]) == ["title"]
    assert rows() == before
    assert Chat.objects.get(pk=chat.pk).title == "Kept"


@pytest.mark.parametrize("text", UNSTORABLE)
def test_a_camera_name_it_cannot_store_is_a_400(alice_api, push_camera, text):
    before = rows()
    for method, url in (
        ("post", "/api/v1/cameras"),
        ("patch", f"/api/v1/cameras/{push_camera.public_id}"),
    ):
        answer = assert_json_error(
            send(alice_api, method, url, {"name": text, "source": "push:"}), 400, "invalid"
        )
        assert "name" in answer["fields"]
    assert rows() == before


@pytest.mark.parametrize("field", ["camera_id", "streamName"])
@pytest.mark.parametrize("text", ["\x00", "\ud800"])
def test_ingest_text_it_cannot_store_is_a_400_naming_the_field(alice_api, push_camera, field, text):
    body = {
        "streamName": "webcam",
        "streamType": "frame",
        "frame": jpeg_b64(),
        "timestamp": now_ms(),
        "camera_id": push_camera.public_id,
        field: text,
    }
    before = rows()
    answer = assert_json_error(send(alice_api, "post", INGEST, body), 400, "invalid_characters")
    assert answer["error"].startswith(f"{field} contains")
    assert rows() == before


def test_the_rename_page_refuses_a_nul_title_with_a_message(alice, chat, client):
    client.force_login(alice)
    response = client.post(f"/chats/{chat.pk}/rename", {"title": "bad\x00title"}, follow=True)
    assert response.status_code == 200
    assert "cannot be stored" in response.content.decode()
    assert Chat.objects.get(pk=chat.pk).title == "Kept"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/cameras/%00",
        "/api/v1/cameras/a%00b/activity",
        "/api/v1/events?class=%00",
        "/api/v1/events?camera=x%00",
        "/api/v1/chats?x%00=1",
    ],
)
def test_nul_in_the_url_is_a_json_400(alice_api, url):
    answer = assert_json_error(alice_api.get(url), 400)
    assert "cannot be stored" in answer["error"] or "Null characters" in answer["error"]


def test_nul_in_a_page_url_is_a_plain_400(alice, client):
    client.force_login(alice)
    response = client.get("/cameras/%00/")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")


# --- numbers and times with bounds ----------------------------------------------------------


@pytest.fixture
def reply(chat):
    _, reply = message_send(chat=chat, prompt="hello")
    return reply


@pytest.mark.parametrize("offset", ["²", "٣", "-1", "1.5", "1e3", "10000000000000000000000000"])
def test_a_resume_offset_that_is_not_a_bounded_whole_number_is_a_400(
    alice_api, chat, reply, offset
):
    for base in ("/chats", "/api/v1/chats"):
        url = f"{base}/{chat.pk}/messages/{reply.pk}/stream"
        answer = assert_json_error(alice_api.get(url, {"offset": offset}), 400, "invalid_offset")
        assert "offset must be a whole number" in answer["error"]
        response = alice_api.get(url, HTTP_LAST_EVENT_ID=offset)
        assert_json_error(response, 400, "invalid_offset")


@pytest.mark.parametrize(
    "query",
    [
        {"session": str(10**25)},
        {"session": str(2**63)},
        {"session": "²"},
        {"since": "0001-01-01T00:00:00Z"},
        {"until": "0001-01-01T00:00:00Z"},
        {"until": "9999-12-31T23:59:59Z"},
        {"since": "9999-12-31T23:59:59"},
    ],
)
def test_event_filters_out_of_bounds_are_a_400(alice_api, push_camera, query):
    answer = assert_json_error(alice_api.get("/api/v1/events", query), 400, "invalid")
    assert list(answer["fields"]) == list(query)


def test_event_filters_at_the_edge_of_the_bounds_are_answered(alice_api):
    response = alice_api.get(
        "/api/v1/events",
        {"session": str(2**63 - 1), "since": "1970-01-01T00:00:00Z", "until": "2999-12-31T00:00Z"},
    )
    assert response.status_code == 200
    assert response.json()["count"] == 0


@pytest.mark.parametrize(
    "query",
    [
        {"until": "0001-01-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00Z"},
        {"since": "9999-12-31T00:00:00Z"},
        {"until": "9999-12-31T23:59:59.999999Z"},
    ],
)
def test_activity_times_out_of_bounds_are_a_400(alice_api, push_camera, query):
    url = f"/api/v1/cameras/{push_camera.public_id}/activity"
    answer = assert_json_error(alice_api.get(url, query), 400, "invalid")
    assert list(answer["fields"]) == list(query)


def test_the_events_page_refuses_dates_it_cannot_shift(alice, client, push_camera):
    client.force_login(alice)
    for query in ({"date_to": "9999-12-31"}, {"date_from": "0001-01-01"}):
        response = client.get("/events/", query)
        assert response.status_code == 200
        assert "must be between 1970-01-01 and 3000-01-01" in response.content.decode()


def test_a_new_chat_for_an_organization_id_that_is_not_a_number_is_refused(alice, client):
    client.force_login(alice)
    for raw in ("²", str(10**25), "-1"):
        response = client.post("/chats/new", {"organization": raw})
        assert response.status_code == 302
    assert not Chat.objects.exists()


# --- error answers: 404 and 500 on the API are JSON -----------------------------------------


def test_an_unknown_api_path_is_a_json_404(alice_api):
    assert_json_error(alice_api.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_json_error(alice_api.get("/api/v2/chats"), 404, "not_found")


def _boom(request):
    raise RuntimeError("a bug")


urlpatterns = [
    path("api/v1/boom", _boom),
    path("boom", _boom),
    path("chats/<int:chat_id>/messages", _boom, name="chat-messages"),
]
handler500 = "project.views.server_error"


@pytest.mark.urls(__name__)
def test_an_unhandled_error_on_the_api_is_a_json_500_and_pages_keep_html(client):
    client.raise_request_exception = False
    answer = assert_json_error(client.get("/api/v1/boom"), 500, "server_error")
    assert "a bug" not in answer["error"]
    assert_json_error(client.post("/chats/1/messages"), 500, "server_error")
    page = client.get("/boom")
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


# --- ingest timestamps ----------------------------------------------------------------------


def _ingest_body(camera, timestamp) -> dict:
    return {
        "streamName": "webcam",
        "streamType": "frame",
        "frame": jpeg_b64(),
        "timestamp": timestamp,
        "camera_id": camera.public_id,
    }


def test_a_frame_dated_in_the_future_is_refused_with_the_servers_time(alice_api, push_camera):
    before = rows()
    sent = now_ms() + 60_000
    answer = assert_json_error(
        send(alice_api, "post", INGEST, _ingest_body(push_camera, sent)), 400, "future_timestamp"
    )
    assert f"timestamp {sent} is more than 5 s ahead of the server's time" in answer["error"]
    server_ms = int(answer["error"].split("server's time (")[1].split(",")[0])
    assert abs(server_ms - now_ms()) < 5_000
    assert rows() == before


def test_a_frame_dated_now_or_a_moment_ahead_is_accepted(alice_api, push_camera):
    for timestamp in (now_ms(), now_ms() + 2_000):
        response = send(alice_api, "post", INGEST, _ingest_body(push_camera, timestamp))
        assert response.status_code == 200, response.content
        assert response.json()["duplicate"] is False


@override_settings(CAMERA_INGEST_MAX_FUTURE_SECONDS=120)
def test_how_far_ahead_is_a_setting(alice_api, push_camera):
    timestamp = now_ms() + int(timedelta(seconds=60).total_seconds() * 1000)
    response = send(alice_api, "post", INGEST, _ingest_body(push_camera, timestamp))
    assert response.status_code == 200, response.content
