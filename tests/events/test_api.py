"""The events API: filters, pagination, bad input, snapshots, sessions, activity, isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from events.recording import snapshot_jpeg
from tests.events.conftest import event_make, session_make

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def events(front_door, back_yard):
    """Five events for Alice: 3 people and a car on Front door, a person on Back yard."""
    return [
        event_make(front_door, label="person", at=T),
        event_make(front_door, label="person", at=T + timedelta(minutes=10)),
        event_make(front_door, label="car", at=T + timedelta(minutes=20)),
        event_make(front_door, label="person", at=T + timedelta(hours=2)),
        event_make(back_yard, label="person", at=T + timedelta(minutes=5)),
    ]


@pytest.fixture
def charlie_event(charlie_camera):
    return event_make(charlie_camera, label="person", at=T)


def with_snapshot(event):
    import numpy as np

    jpeg = snapshot_jpeg(
        np.zeros((48, 64, 3), np.uint8), label="person", boxes=[([1, 1, 9, 9], 0.8)]
    )
    event.snapshot.save(f"snap-{event.pk}.jpg", ContentFile(jpeg), save=True)
    return event


def test_it_lists_events_newest_first(alice_api, events):
    response = alice_api.get("/api/v1/events")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5
    assert [item["id"] for item in body["results"]] == [
        e.pk for e in sorted(events, key=lambda e: e.started_at, reverse=True)
    ]
    first = body["results"][0]
    assert first["class"] == "person"
    assert first["camera_id"] and first["camera_name"] == "Front door"
    assert first["url"] == f"/events/{first['id']}"
    assert first["ongoing"] is False
    assert first["bbox"] == [10, 20, 30, 40]
    assert first["snapshot_url"] is None


def test_bob_sees_his_organizations_events(bob_api, events):
    assert bob_api.get("/api/v1/events").json()["count"] == 5


def test_it_filters_by_camera_class_and_time(alice_api, events, front_door):
    def count(**params):
        response = alice_api.get("/api/v1/events", params)
        assert response.status_code == 200, response.json()
        return response.json()["count"]

    assert count(camera=front_door.public_id) == 4
    assert count(**{"class": "person"}) == 4
    assert count(camera=front_door.public_id, **{"class": "person"}) == 3
    # since is inclusive, until exclusive, both on the start time.
    assert count(since="2026-11-20T12:10:00Z") == 3
    assert count(until="2026-11-20T12:10:00Z") == 2
    assert count(since="2026-11-20T12:00:00+00:00", until="2026-11-20T13:00:00+00:00") == 4
    assert count(**{"class": "dog"}) == 0


def test_naive_times_are_read_in_the_server_time_zone(alice_api, events, settings):
    settings.TIME_ZONE = "Europe/Paris"
    # 13:10 in Paris is 12:10 UTC.
    assert alice_api.get("/api/v1/events", {"since": "2026-11-20T13:10:00"}).json()["count"] == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T00:00:00Z"}, "until"),
        ({"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"}, "until"),
        ({"class": "<script>"}, "class"),
        ({"class": "x" * 65}, "class"),
        ({"camera": "c" * 33}, "camera"),
        ({"session": "abc"}, "session"),
    ],
)
def test_bad_filters_get_a_400_that_names_the_field(alice_api, events, params, field):
    response = alice_api.get("/api/v1/events", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["fields"]
    assert field in body["error"]


def test_it_paginates_with_limit_and_offset(alice_api, events):
    body = alice_api.get("/api/v1/events", {"limit": 2}).json()
    assert body["count"] == 5 and len(body["results"]) == 2
    assert body["next"].endswith("/api/v1/events?limit=2&offset=2")
    last = alice_api.get(body["next"].replace("offset=2", "offset=4")).json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert last["previous"].endswith("/api/v1/events?limit=2&offset=2")


def test_it_still_understands_the_page_numbers_it_was_paged_with(alice_api, events):
    body = alice_api.get("/api/v1/events", {"page_size": 2}).json()
    assert body["count"] == 5 and len(body["results"]) == 2
    # The links are in the one style of every list.
    assert body["next"].endswith("/api/v1/events?limit=2&offset=2")
    last = alice_api.get("/api/v1/events", {"page_size": 2, "page": 3}).json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert [e["id"] for e in last["results"]] == [
        e["id"]
        for e in alice_api.get("/api/v1/events", {"limit": 2, "offset": 4}).json()["results"]
    ]
    # Past the end, like an offset past the end: empty (it was a 404).
    assert alice_api.get("/api/v1/events", {"page": 9}).json()["results"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "x"},
        {"offset": "-1"},
        {"offset": "²"},
        {"offset": str(10**25)},
        {"page": "0"},
        {"page_size": "1e3"},
    ],
)
def test_a_bad_page_is_a_400_in_the_error_shape(alice_api, events, params):
    response = alice_api.get("/api/v1/events", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and set(body["fields"]) == set(params)


def test_the_list_costs_the_same_queries_for_2_or_50_events(
    alice_api, front_door, django_assert_max_num_queries
):
    for minute in range(50):
        event_make(front_door, label="person", at=T + timedelta(minutes=minute))
    # Token lookup and touch, count, page (cameras joined): never one query per event.
    with django_assert_max_num_queries(5):
        response = alice_api.get("/api/v1/events")
    assert len(response.json()["results"]) == 50


def test_charlie_sees_none_of_alices_events(charlie_api, events, charlie_event, front_door):
    body = charlie_api.get("/api/v1/events").json()
    assert [item["id"] for item in body["results"]] == [charlie_event.pk]
    assert charlie_api.get("/api/v1/events", {"camera": front_door.public_id}).json()["count"] == 0
    assert charlie_api.get(f"/api/v1/events/{events[0].pk}").status_code == 404
    assert charlie_api.get(f"/api/v1/events/{events[0].pk}/snapshot").status_code == 404
    assert charlie_api.get(f"/api/v1/cameras/{front_door.public_id}/sessions").status_code == 404
    assert charlie_api.get(f"/api/v1/cameras/{front_door.public_id}/activity").status_code == 404


def test_anonymous_callers_are_refused(events, front_door):
    client = APIClient()
    for url in (
        "/api/v1/events",
        f"/api/v1/events/{events[0].pk}",
        f"/api/v1/events/{events[0].pk}/snapshot",
        f"/api/v1/cameras/{front_door.public_id}/sessions",
        f"/api/v1/cameras/{front_door.public_id}/activity",
    ):
        response = client.get(url)
        assert response.status_code in (401, 403), url
        assert "error" in response.json()


def test_a_wrong_token_is_refused(events):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer sl_not-a-token")
    assert client.get("/api/v1/events").status_code in (401, 403)


def test_it_shows_one_event(alice_api, events):
    response = alice_api.get(f"/api/v1/events/{events[2].pk}")
    assert response.status_code == 200
    assert response.json()["class"] == "car"
    assert alice_api.get("/api/v1/events/999999").status_code == 404
    assert alice_api.get("/api/v1/events/999999").json() == {
        "error": "Not found.",
        "code": "not_found",
    }


def test_it_serves_the_snapshot_as_jpeg(alice_api, events, media_root):
    event = with_snapshot(events[0])
    response = alice_api.get(f"/api/v1/events/{event.pk}/snapshot")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    data = b"".join(response.streaming_content)
    assert data[:2] == b"\xff\xd8"
    listed = alice_api.get(f"/api/v1/events/{event.pk}").json()
    assert listed["snapshot_url"] == f"/api/v1/events/{event.pk}/snapshot"


def test_a_missing_snapshot_is_404(alice_api, events, media_root):
    assert alice_api.get(f"/api/v1/events/{events[0].pk}/snapshot").status_code == 404
    event = with_snapshot(events[1])
    default_storage.delete(event.snapshot.name)
    assert alice_api.get(f"/api/v1/events/{event.pk}/snapshot").status_code == 404


def test_it_lists_a_cameras_sessions(alice_api, front_door, back_yard):
    older = session_make(front_door, at=T, counts={"person": 2})
    newer = session_make(front_door, at=T + timedelta(hours=1), counts={"car": 1})
    session_make(back_yard, at=T)
    body = alice_api.get(f"/api/v1/cameras/{front_door.public_id}/sessions").json()
    assert body["count"] == 2
    assert [item["id"] for item in body["results"]] == [newer.pk, older.pk]
    assert body["results"][1]["counts"] == {"person": 2}
    assert body["results"][1]["frames_processed"] == 6000
    assert body["results"][1]["camera_id"] == front_door.public_id
    assert alice_api.get("/api/v1/cameras/nope/sessions").status_code == 404


def test_events_can_be_filtered_by_session(alice_api, front_door):
    session = session_make(front_door, at=T)
    event_make(front_door, label="person", at=T, session=session)
    event_make(front_door, label="person", at=T)
    assert alice_api.get("/api/v1/events", {"session": session.pk}).json()["count"] == 1


def test_activity_counts_events_per_class_per_bucket(alice_api, events, front_door):
    response = alice_api.get(
        f"/api/v1/cameras/{front_door.public_id}/activity",
        {"since": "2026-11-20T12:00:00Z", "until": "2026-11-20T15:00:00Z", "bucket": "1h"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["camera_id"] == front_door.public_id
    assert body["bucket_seconds"] == 3600
    assert body["buckets"] == [
        "2026-11-20T12:00:00Z",
        "2026-11-20T13:00:00Z",
        "2026-11-20T14:00:00Z",
    ]
    assert body["series"] == {"car": [1, 0, 0], "person": [2, 0, 1]}
    assert body["totals"] == {"car": 1, "person": 3}


def test_activity_with_small_buckets(alice_api, events, front_door):
    body = alice_api.get(
        f"/api/v1/cameras/{front_door.public_id}/activity",
        {"since": "2026-11-20T12:00:00Z", "until": "2026-11-20T12:30:00Z", "bucket": "15m"},
    ).json()
    assert body["series"] == {"car": [0, 1], "person": [2, 0]}


def test_activity_defaults_to_the_last_24_hours_in_hours(alice_api, front_door):
    event_make(front_door, label="person", at=datetime.now(UTC) - timedelta(minutes=5))
    body = alice_api.get(f"/api/v1/cameras/{front_door.public_id}/activity").json()
    assert body["bucket_seconds"] == 3600
    assert len(body["buckets"]) in (24, 25)
    assert body["totals"] == {"person": 1}


@pytest.mark.parametrize(
    "params",
    [
        {"bucket": "7s"},
        {"bucket": "0m"},
        {"bucket": "fortnight"},
        {"bucket": "1m", "since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
        {"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"},
        {"since": "soon"},
    ],
)
def test_bad_activity_parameters_get_a_400(alice_api, front_door, params):
    response = alice_api.get(f"/api/v1/cameras/{front_door.public_id}/activity", params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["error"]


def test_too_many_buckets_says_what_to_do(alice_api, front_door):
    response = alice_api.get(
        f"/api/v1/cameras/{front_door.public_id}/activity",
        {"bucket": "1m", "since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
    )
    assert "at most 500" in response.json()["error"]


def test_sessions_and_activity_cost_a_fixed_number_of_queries(
    alice_api, front_door, django_assert_max_num_queries
):
    for hour in range(20):
        session_make(front_door, at=T + timedelta(hours=hour))
        event_make(front_door, label="person", at=T + timedelta(hours=hour))
    with django_assert_max_num_queries(6):
        assert alice_api.get(f"/api/v1/cameras/{front_door.public_id}/sessions").status_code == 200
    with django_assert_max_num_queries(5):
        response = alice_api.get(
            f"/api/v1/cameras/{front_door.public_id}/activity",
            {"since": "2026-11-20T00:00:00Z", "until": "2026-11-21T12:00:00Z"},
        )
    assert response.json()["totals"] == {"person": 20}


def test_tracked_lists_only_object_events_or_only_motion(alice_api, front_door):
    person = event_make(front_door, label="person", at=T, track_id=4)
    motion = event_make(front_door, label="motion", at=T + timedelta(seconds=1))

    def ids(**params):
        response = alice_api.get("/api/v1/events", params)
        assert response.status_code == 200, response.json()
        return [item["id"] for item in response.json()["results"]]

    assert ids(tracked="true") == [person.pk]
    assert ids(tracked="false") == [motion.pk]
    assert ids() == [motion.pk, person.pk]
    response = alice_api.get("/api/v1/events", {"tracked": "sometimes"})
    assert response.status_code == 400
    assert "tracked" in response.json()["fields"]


def test_an_event_says_its_track_path_and_duration(alice_api, front_door):
    path = [[0, 0.1, 0.2, 0.1, 0.3], [1500, 0.4, 0.2, 0.1, 0.3]]
    event = event_make(front_door, label="person", at=T, seconds=1.5, track_id=9, path=path)
    body = alice_api.get(f"/api/v1/events/{event.pk}").json()
    assert body["track_id"] == 9
    assert body["path"] == path
    assert body["duration_seconds"] == 1.5
    motion = event_make(front_door, label="motion", at=T)
    body = alice_api.get(f"/api/v1/events/{motion.pk}").json()
    assert (body["track_id"], body["path"]) == (None, [])
