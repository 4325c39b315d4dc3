"""The assistant's answers about session data: every number equals what the API returns.

Each answer links to the events page with the filters that select its events
(`/events/?camera=…&class=…&since=…`); these tests open that page as Alice and count its rows,
run the same filters through the API, and compare both with the number in the answer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.utils import timezone

from events.answers import answer_question, capabilities_markdown
from events.questions import CAPABILITIES
from tests.events.conftest import event_make, session_make

pytestmark = pytest.mark.django_db

CHECK = re.compile(r"\]\((/events/\?[^)\s]+)\)")
EVENT_ROW = '<li class="event-card">'
BOLD_COUNT = re.compile(r"\*\*(\d+) (?:[\w ]+ )?events?\*\*")


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def data(now, front_door, back_yard, charlie_camera):
    session = session_make(
        front_door, at=now - timedelta(minutes=30), minutes=20, counts={"person": 2, "car": 1}
    )
    made = [
        event_make(front_door, label="person", at=now - timedelta(minutes=25), session=session),
        event_make(front_door, label="person", at=now - timedelta(minutes=15), session=session),
        event_make(front_door, label="car", at=now - timedelta(minutes=12), session=session),
        event_make(front_door, label="person", at=now - timedelta(minutes=3)),
        event_make(back_yard, label="person", at=now - timedelta(minutes=40)),
        event_make(back_yard, label="motion", at=now - timedelta(hours=3)),
        event_make(front_door, label="person", at=now - timedelta(hours=26)),
        event_make(front_door, label="person", at=now - timedelta(hours=27)),
    ]
    # Charlie's events must never show up in Alice's numbers.
    for minutes in (1, 2, 5, 50):
        event_make(charlie_camera, label="person", at=now - timedelta(minutes=minutes))
    return made


def ask(organization, text, now):
    answer = answer_question(organization=organization, text=text, now=now)
    assert answer is not None, text
    return answer


def api_count(client, path: str) -> int:
    response = client.get(path)
    assert response.status_code == 200, (path, response.json())
    return response.json()["count"]


@pytest.fixture
def alice_page(client, alice):
    client.force_login(alice)
    return client


def page_rows(client, link: str) -> int:
    """How many events the events page lists at `link` (the data fits on one page)."""
    response = client.get(link)
    assert response.status_code == 200, link
    html = response.content.decode()
    assert 'class="error"' not in html, (link, html)
    return html.count(EVENT_ROW)


def api_path_of(link: str) -> str:
    """The API query with the page link's filters (the API is already scoped to Alice, who is
    in one organization, so the page's `organization` parameter is not needed there)."""
    params = [(k, v) for k, v in parse_qsl(urlsplit(link).query) if k != "organization"]
    return f"/api/v1/events?{urlencode(params)}"


def checked_count(api, page, link: str) -> int:
    """The count behind a check link: the page's rows, which must equal the API's count."""
    rows = page_rows(page, link)
    assert rows == api_count(api, api_path_of(link)), link
    return rows


@pytest.mark.parametrize(
    "text",
    [
        "How many people on Front door today?",
        "how many people in the last hour?",
        "How many cars on front door in the last 2 hours?",
        "how many people yesterday?",
        "how many people since 9:00?",
        "how many motion events on back yard in the last 24 hours",
        "how many people this week?",
        "how many people during the last session on Front door?",
        "What did the front door camera see in the last hour?",
        "what happened in the last 30 minutes?",
    ],
)
def test_the_numbers_in_an_answer_are_the_apis_and_the_linked_pages(
    alice_api, alice_page, organization, data, now, text
):
    answer = ask(organization, text, now)
    counts = [int(n) for n in BOLD_COUNT.findall(answer)]
    checks = CHECK.findall(answer)
    assert counts and checks, answer
    assert "/api/v1/" not in answer
    assert counts[0] == checked_count(alice_api, alice_page, checks[-1]), answer


def test_a_count_answer_names_the_camera_the_window_and_links_events(organization, data, now):
    answer = ask(organization, "How many people on Front door in the last hour?", now)
    assert "**3 person events** on **Front door** in the last hour" in answer
    assert f"(/events/{data[3].pk})" in answer
    assert "counted when it starts" in answer


def test_a_question_about_two_classes_answers_each_with_its_own_check(
    alice_api, alice_page, organization, data, now
):
    answer = ask(organization, "how many people and cars in the last hour?", now)
    assert "**4 person events**" in answer and "**1 car event**" in answer
    counts = [int(n) for n in BOLD_COUNT.findall(answer)]
    checks = CHECK.findall(answer)
    assert counts == [checked_count(alice_api, alice_page, link) for link in checks] == [4, 1]
    assert "[person events](/events/?class=person&since=" in answer


def test_no_data_is_said_plainly(organization, front_door, now):
    answer = ask(organization, "What did the cameras see in the last hour?", now)
    assert "Nothing was detected" in answer


def test_zero_is_a_number_too(alice_api, alice_page, organization, data, now):
    answer = ask(organization, "How many faces today?", now)
    assert "**0 face events**" in answer
    assert checked_count(alice_api, alice_page, CHECK.findall(answer)[-1]) == 0


def test_an_organization_without_cameras_is_told_how_to_add_one(organization, now):
    answer = ask(organization, "how many people today?", now)
    assert "has no cameras yet" in answer and "/cameras/" in answer


def test_the_busiest_camera_is_the_one_with_most_events(
    alice_api, organization, data, now, front_door, back_yard
):
    answer = ask(organization, "Which camera was busiest in the last 24 hours?", now)
    since = (now - timedelta(hours=24)).isoformat()
    front = api_count(
        alice_api, f"/api/v1/events?camera={front_door.public_id}&since={since.replace('+', '%2B')}"
    )
    back = api_count(
        alice_api, f"/api/v1/events?camera={back_yard.public_id}&since={since.replace('+', '%2B')}"
    )
    assert front == 4 and back == 2
    assert "**Front door** was the busiest camera in the last 24 hours" in answer
    assert "**4 events**" in answer and "Back yard 2" in answer


# Mid-afternoon, so the busiest of the last 8 hours is today's: the test reads "HH:MM–HH:MM"
# (run just after midnight the answer rightly says "yesterday 23:00–00:00").
@pytest.mark.parametrize("now", [datetime(2026, 12, 5, 15, 20, tzinfo=UTC)], ids=["15:20"])
def test_the_busiest_hour_matches_the_activity_api(alice_api, organization, data, now, front_door):
    event_make(front_door, label="car", at=now - timedelta(hours=5, minutes=10))
    event_make(front_door, label="car", at=now - timedelta(hours=5, minutes=5))
    answer = ask(organization, "What was the busiest hour on front door in the last 8 hours?", now)
    hour = re.search(r"\*\*(\d\d:\d\d)–(\d\d:\d\d)\*\* with \*\*(\d+) events?\*\*", answer)
    assert hour, answer
    since = (now - timedelta(hours=8)).replace(minute=0, second=0, microsecond=0)
    body = alice_api.get(
        f"/api/v1/cameras/{front_door.public_id}/activity",
        {"since": since.isoformat(), "until": now.isoformat(), "bucket": "1h"},
    ).json()
    totals = [sum(column) for column in zip(*body["series"].values(), strict=True)]
    best = max(range(len(totals)), key=lambda i: (totals[i], -i))
    assert int(hour.group(3)) == totals[best]
    start = datetime.fromisoformat(body["buckets"][best].replace("Z", "+00:00"))
    assert hour.group(1) == start.astimezone(UTC).strftime("%H:%M")


def test_last_seen_names_the_camera_and_time_and_links_the_event(organization, data, now):
    answer = ask(organization, "When was a car last seen?", now)
    car = data[2]
    assert "**car** was last seen on **Front door**" in answer
    assert f"(/events/{car.pk})" in answer
    assert car.last_seen_at.astimezone(UTC).strftime("%H:%M:%S") in answer


def test_last_seen_of_an_ongoing_event_says_it_is_in_view(organization, front_door, now):
    event = event_make(front_door, label="face", at=now - timedelta(seconds=20), ongoing=True)
    answer = ask(organization, "latest face?", now)
    assert "right now" in answer and f"/events/{event.pk}" in answer


def test_last_seen_without_data_says_so(organization, data, now):
    assert "No face was seen" in ask(organization, "when was a face last seen?", now)


def test_a_comparison_counts_both_windows_with_the_api(
    alice_api, organization, data, now, front_door
):
    event_make(front_door, label="person", at=now - timedelta(hours=1, minutes=30))
    answer = ask(organization, "How do people in the last hour compare with the hour before?", now)
    row = re.search(r"\| person \| (\d+) \| (\d+) \|", answer)
    assert row, answer
    iso = lambda moment: moment.isoformat().replace("+", "%2B")  # noqa: E731
    hour_ago, two_hours_ago = now - timedelta(hours=1), now - timedelta(hours=2)
    assert int(row.group(1)) == api_count(
        alice_api, f"/api/v1/events?class=person&since={iso(hour_ago)}&until={iso(now)}"
    )
    assert int(row.group(2)) == api_count(
        alice_api, f"/api/v1/events?class=person&since={iso(two_hours_ago)}&until={iso(hour_ago)}"
    )
    assert int(row.group(1)) == 4 and int(row.group(2)) == 1


def test_the_last_session_answer_uses_the_sessions_own_counts(
    alice_api, organization, data, now, front_door
):
    answer = ask(organization, "What happened during the last session on Front door?", now)
    body = alice_api.get(f"/api/v1/cameras/{front_door.public_id}/sessions").json()["results"][0]
    assert f"{body['frames_processed']} frames processed" in answer
    assert "**3 events** (person 2, car 1)" in answer
    assert body["counts"] == {"person": 2, "car": 1}


def test_questions_not_about_the_cameras_are_left_to_the_chat_assistant(organization, data, now):
    assert answer_question(organization=organization, text="Tell me a joke", now=now) is None
    assert answer_question(organization=organization, text="help", now=now) is None
    assert (
        answer_question(organization=organization, text="how many people are members?", now=now)
        is None
    )
    assert (
        answer_question(organization=organization, text="how many members joined today?", now=now)
        is None
    )
    assert answer_question(
        organization=organization, text="how many chats did the cameras see events in?", now=now
    )


def test_charlie_gets_only_his_own_numbers(charlie_organization, data, now):
    answer = ask(charlie_organization, "how many people in the last hour?", now)
    assert "**4 person events**" in answer
    assert "Front door" not in answer and "Back yard" not in answer


def test_the_capabilities_list_every_kind_of_question():
    text = capabilities_markdown()
    for capability in CAPABILITIES:
        assert capability in text
    assert "since 9:00" in text


def test_today_and_the_times_follow_the_organizations_time_zone(
    alice_api, alice_page, organization, front_door
):
    # 03:00 UTC on 6 December is 22:00 on 5 December in New York (EST, UTC-5).
    organization.time_zone = "America/New_York"
    organization.save()
    now = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    event_make(front_door, label="person", at=datetime(2026, 12, 6, 1, 0, tzinfo=UTC))
    event_make(front_door, label="person", at=datetime(2026, 12, 5, 23, 0, tzinfo=UTC))
    # 23:30 on 4 December in New York: yesterday there, although 5 December in UTC.
    event_make(front_door, label="person", at=datetime(2026, 12, 5, 4, 30, tzinfo=UTC))
    answer = ask(organization, "How many people today?", now)
    assert "**2 person events**" in answer, answer
    assert "today (00:00–22:00)" in answer
    assert "times in America/New_York" in answer
    assert "person on Front door at 20:00:00" in answer
    assert "person on Front door at 18:00:00" in answer
    links = CHECK.findall(answer)
    assert "since=2026-12-05T05%3A00%3A00Z" in links[-1]
    assert checked_count(alice_api, alice_page, links[-1]) == 2
    yesterday = ask(organization, "How many people yesterday?", now)
    assert "**1 person event**" in yesterday
    assert checked_count(alice_api, alice_page, CHECK.findall(yesterday)[-1]) == 1


def test_the_same_question_in_the_servers_zone_counts_a_utc_day(
    alice_api, alice_page, organization, front_door
):
    now = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    event_make(front_door, label="person", at=datetime(2026, 12, 6, 1, 0, tzinfo=UTC))
    event_make(front_door, label="person", at=datetime(2026, 12, 5, 23, 0, tzinfo=UTC))
    answer = ask(organization, "How many people today?", now)
    assert "**1 person event**" in answer and "times in UTC" in answer
    assert checked_count(alice_api, alice_page, CHECK.findall(answer)[-1]) == 1


def test_a_session_answer_links_the_sessions_events(alice_api, alice_page, organization, data, now):
    answer = ask(organization, "how many people during the last session on Front door?", now)
    link = CHECK.findall(answer)[-1]
    assert "session=" in link and "class=person" in link
    assert checked_count(alice_api, alice_page, link) == 2


def test_the_linked_page_for_several_cameras_sums_to_the_answer(
    alice_api, alice_page, organization, data, now
):
    answer = ask(organization, "how many people on front door and back yard in the last hour?", now)
    counts = [int(n) for n in BOLD_COUNT.findall(answer)]
    links = CHECK.findall(answer)
    assert "on Front door](" in answer and "on Back yard](" in answer
    assert counts[0] == sum(checked_count(alice_api, alice_page, link) for link in links), answer


def test_the_busiest_hour_before_midnight_ends_at_0000_not_at_tomorrows_date(
    organization, front_door
):
    local_now = timezone.now().astimezone(organization.tzinfo).replace(hour=23, minute=18)
    event_make(front_door, label="person", at=local_now - timedelta(minutes=5))
    event_make(front_door, label="person", at=local_now - timedelta(minutes=10))
    event_make(front_door, label="car", at=local_now - timedelta(hours=3))
    answer = ask(
        organization, "What was the busiest hour on front door in the last 8 hours?", local_now
    )
    assert "**23:00–00:00** with **2 events** (person 2)" in answer, answer
    assert "(15:18–23:18)" in answer, answer


def test_the_busiest_hour_on_the_night_clocks_go_back_names_the_zones(organization, front_door):
    organization.time_zone = "America/New_York"
    organization.save()
    # 2026-11-01: 01:00–02:00 happens twice in New York, first in EDT (05:00 UTC), then in EST.
    now = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
    event_make(front_door, label="person", at=datetime(2026, 11, 1, 5, 10, tzinfo=UTC))
    event_make(front_door, label="person", at=datetime(2026, 11, 1, 5, 20, tzinfo=UTC))
    answer = ask(organization, "What was the busiest hour on front door in the last 3 hours?", now)
    assert "**01:00 EDT–01:00 EST** with **2 events**" in answer, answer
