"""Question understanding alone: periods against a fixed clock, classes, cameras, intents."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from events.questions import (
    Intent,
    parse_cameras,
    parse_labels,
    parse_period,
    parse_question,
    parse_zone,
)

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
# A Wednesday afternoon.
NOW = datetime(2026, 11, 18, 14, 30, 15, tzinfo=UTC)
CAMERAS = ["Front door", "Back yard", "Front door 2", "Demo scene"]


def period(text: str, tz=UTC, now=NOW):
    return parse_period(text, now=now, tz=tz)


def test_today_starts_at_local_midnight():
    p = period("how many people today?")
    assert (p.start, p.end) == (datetime(2026, 11, 18, tzinfo=UTC), NOW)
    assert p.description == "today"


def test_today_follows_the_configured_time_zone():
    p = period("today", tz=PARIS)
    assert p.start == datetime(2026, 11, 18, tzinfo=PARIS)
    assert p.start.astimezone(UTC) == datetime(2026, 11, 17, 23, tzinfo=UTC)


def test_yesterday_is_the_whole_previous_local_day():
    p = period("anything yesterday?")
    assert (p.start, p.end) == (
        datetime(2026, 11, 17, tzinfo=UTC),
        datetime(2026, 11, 18, tzinfo=UTC),
    )


def test_yesterday_across_a_daylight_saving_change_is_23_hours():
    now = datetime(2026, 3, 30, 12, tzinfo=PARIS)  # the day after clocks went forward
    p = period("yesterday", tz=PARIS, now=now)
    assert p.start == datetime(2026, 3, 29, tzinfo=PARIS)
    assert p.end.astimezone(UTC) - p.start.astimezone(UTC) == timedelta(hours=23)


@pytest.mark.parametrize(
    ("text", "length", "description"),
    [
        ("in the last hour", timedelta(hours=1), "in the last hour"),
        ("past hour", timedelta(hours=1), "in the last hour"),
        ("in the last 30 minutes", timedelta(minutes=30), "in the last 30 minutes"),
        ("last 2 hours", timedelta(hours=2), "in the last 2 hours"),
        ("in the last few minutes", timedelta(minutes=5), "in the last 5 minutes"),
        ("last couple of hours", timedelta(hours=2), "in the last 2 hours"),
        ("over the past three days", timedelta(days=3), "in the last 3 days"),
        ("last 24 hours", timedelta(hours=24), "in the last 24 hours"),
        ("last 10 mins", timedelta(minutes=10), "in the last 10 minutes"),
        ("last week", timedelta(weeks=1), "in the last week"),
    ],
)
def test_rolling_windows_end_now(text, length, description):
    p = period(text)
    assert (p.start, p.end) == (NOW - length, NOW)
    assert p.description == description
    assert p.step == length


def test_since_a_time_means_today_from_that_time():
    p = period("how many cars since 9:00?")
    assert (p.start, p.end) == (datetime(2026, 11, 18, 9, tzinfo=UTC), NOW)
    assert p.description == "since 09:00"


@pytest.mark.parametrize(
    ("text", "hour", "minute"),
    [("since 9am", 9, 0), ("since 2pm", 14, 0), ("since 12am", 0, 0), ("since 13.15", 13, 15)],
)
def test_since_understands_common_time_forms(text, hour, minute):
    assert period(text).start == datetime(2026, 11, 18, hour, minute, tzinfo=UTC)


def test_since_a_later_time_of_day_means_yesterday_at_that_time():
    assert period("since 22:00").start == datetime(2026, 11, 17, 22, tzinfo=UTC)


def test_since_an_impossible_time_falls_back_to_the_default_window():
    assert not period("since 27:00").explicit


def test_this_week_starts_on_monday():
    p = period("this week")
    assert p.start == datetime(2026, 11, 16, tzinfo=UTC)
    assert p.end == NOW


def test_the_last_session_is_left_for_the_database_to_resolve():
    p = period("what happened during the last session on Front door?")
    assert p.last_session
    assert p.start is None


def test_no_period_means_the_last_24_hours():
    p = period("how many people?")
    assert (p.start, p.end) == (NOW - timedelta(hours=24), NOW)
    assert not p.explicit


def test_today_wins_over_yesterday_in_a_comparison():
    assert period("more people today than yesterday?").description == "today"


def test_the_previous_period_is_shifted_by_one_step():
    previous = period("today").previous()
    assert previous.start == datetime(2026, 11, 17, tzinfo=UTC)
    assert previous.end == NOW - timedelta(days=1)
    previous = period("last 2 hours").previous()
    assert (previous.start, previous.end) == (NOW - timedelta(hours=4), NOW - timedelta(hours=2))


def test_a_session_period_has_no_previous_period():
    with pytest.raises(ValueError):
        period("last session").previous()


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("how many people", ("person",)),
        ("was anyone there", ("person",)),
        ("faces and cars", ("face", "car")),
        ("any movement?", ("motion",)),
        ("vehicles today", ("car",)),
        ("nothing to see", ()),
    ],
)
def test_class_words_map_to_detector_labels(text, labels):
    assert parse_labels(text) == labels


def test_labels_the_organization_has_seen_are_understood_with_plurals():
    assert parse_labels("how many dogs and buses?", known_labels=["dog", "bus"]) == ("dog", "bus")


def test_a_full_camera_name_matches_case_insensitively():
    assert parse_cameras("people on FRONT DOOR today", camera_names=CAMERAS) == ("Front door",)


def test_the_longer_camera_name_wins_over_its_prefix():
    assert parse_cameras("cars on front door 2?", camera_names=CAMERAS) == ("Front door 2",)


def test_two_cameras_can_be_named():
    assert parse_cameras("front door or back yard", camera_names=CAMERAS) == (
        "Front door",
        "Back yard",
    )


def test_a_word_beside_camera_finds_the_camera():
    assert parse_cameras("what did the demo camera see?", camera_names=CAMERAS) == ("Demo scene",)


def test_no_camera_named_means_all_cameras():
    assert parse_cameras("how many people today", camera_names=CAMERAS) == ()


def test_a_class_word_beside_camera_is_not_taken_for_a_camera_name():
    # "the person camera" asks about people, not about a camera called "Person entrance".
    assert parse_cameras("the person camera", camera_names=["Person entrance"]) == ()


def ask(text: str):
    return parse_question(
        text, now=NOW, tz=UTC, camera_names=CAMERAS, known_labels=["person", "motion"]
    )


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("How many people on Front door today?", Intent.COUNT),
        ("number of cars since 9:00", Intent.COUNT),
        ("did anyone come by?", Intent.COUNT),
        ("What did the demo camera see in the last few minutes?", Intent.SUMMARY),
        ("What happened yesterday?", Intent.SUMMARY),
        ("anything on back yard?", Intent.SUMMARY),
        ("what's happening on back yard", Intent.SUMMARY),
        ("Which camera was busiest yesterday?", Intent.BUSIEST_CAMERA),
        ("which camera saw the most people today", Intent.BUSIEST_CAMERA),
        ("What was the busiest hour today?", Intent.BUSIEST_HOUR),
        ("when was it busiest?", Intent.BUSIEST_HOUR),
        ("When was a car last seen?", Intent.LAST_SEEN),
        ("when did someone last show up at front door", Intent.LAST_SEEN),
        ("latest face?", Intent.LAST_SEEN),
        ("How does today compare with yesterday?", Intent.COMPARE),
        ("more people than usual in the last hour?", Intent.COMPARE),
        ("What happened during the last session on Front door?", Intent.SESSION),
        ("how many people during the last session?", Intent.COUNT),
        ("help", Intent.HELP),
        ("What can you answer?", Intent.HELP),
        ("Tell me a joke", Intent.UNKNOWN),
    ],
)
def test_intents(text, intent):
    assert ask(text).intent == intent


def test_a_question_carries_everything_the_answer_needs():
    question = ask("How many people on Front door since 9:00?")
    assert question.intent == Intent.COUNT
    assert question.labels == ("person",)
    assert question.cameras == ("Front door",)
    assert question.period.start == datetime(2026, 11, 18, 9, tzinfo=UTC)


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError):
        parse_question("today", now=datetime(2026, 1, 1), tz=UTC)


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("how many people entered the Driveway today?", "Driveway"),
        ("anyone on the driveway?", "Driveway"),
        ("how many cars in the driveway gate zone?", "Driveway gate"),
        ("how many people today?", None),
        ("how many people drove away?", None),
    ],
)
def test_a_zone_is_named_by_its_whole_name_the_longest_first(text, zone):
    assert parse_zone(text, zone_names=["Driveway", "Driveway gate", "Porch"]) == zone


def test_a_zone_named_like_a_camera_is_the_camera_unless_the_question_says_zone():
    names = ["Garden"]
    assert parse_zone("what did Garden see?", zone_names=names, camera_names=("Garden",)) is None
    assert (
        parse_zone("people in the Garden zone?", zone_names=names, camera_names=("Garden",))
        == "Garden"
    )


def test_a_question_about_a_zone_counts_people_in_it():
    question = parse_question(
        "How many people entered the Driveway today?",
        now=NOW,
        tz=UTC,
        camera_names=["Street"],
        zone_names=["Driveway"],
    )
    assert question.intent == Intent.COUNT
    assert (question.labels, question.cameras, question.zone) == (("person",), (), "Driveway")
    assert question.period.description == "today"
