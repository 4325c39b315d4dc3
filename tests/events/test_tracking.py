"""The event rules alone: one event per tracked object, per-class presence for untracked
classes (motion), gap tolerance, best frame, paths, session tallies."""

from __future__ import annotations

import pytest

from events.tracking import (
    PATH_FIRST_INTERVAL_MS,
    PATH_MAX_POINTS,
    Closed,
    EventTracker,
    Extended,
    Opened,
    SessionTally,
)


def person(confidence: float, bbox=(10, 10, 20, 40)) -> dict:
    return {"class": "person", "confidence": confidence, "bbox": list(bbox)}


def car(confidence: float) -> dict:
    return {"class": "car", "confidence": confidence, "bbox": [0, 0, 50, 30]}


def kinds(operations) -> list[tuple[str, str]]:
    return [(type(op).__name__, op.event.label) for op in operations]


def test_a_new_class_opens_an_event():
    tracker = EventTracker(gap_seconds=2)
    operations = tracker.observe(1_000, [person(0.7)], frame="frame-1")
    assert kinds(operations) == [("Opened", "person")]
    event = operations[0].event
    assert (event.started_ms, event.last_seen_ms, event.frames_seen) == (1_000, 1_000, 1)
    assert event.best_frame == "frame-1"
    assert event.best_bbox == [10, 10, 20, 40]


def test_seeing_the_class_again_extends_the_same_event():
    tracker = EventTracker(gap_seconds=2)
    first = tracker.observe(0, [person(0.7)])[0].event
    operations = tracker.observe(100, [person(0.6)])
    assert kinds(operations) == [("Extended", "person")]
    assert operations[0].event is first
    assert operations[0].new_best is False
    assert first.frames_seen == 2
    assert first.last_seen_ms == 100


def test_a_more_confident_detection_becomes_the_best_box_and_frame():
    tracker = EventTracker(gap_seconds=2)
    tracker.observe(0, [person(0.5)], frame="weak")
    operations = tracker.observe(100, [person(0.9, bbox=(1, 2, 3, 4))], frame="strong")
    assert operations[0].new_best is True
    event = operations[0].event
    assert event.peak_confidence == 0.9
    assert event.best_bbox == [1, 2, 3, 4]
    assert event.best_frame == "strong"
    # A weaker later frame does not replace it.
    tracker.observe(200, [person(0.8)], frame="later")
    assert event.best_frame == "strong"


def test_two_untracked_boxes_in_one_frame_are_one_event_with_the_stronger_box():
    tracker = EventTracker(gap_seconds=2)
    operations = tracker.observe(0, [person(0.4, (0, 0, 1, 1)), person(0.8, (5, 5, 9, 9))])
    assert kinds(operations) == [("Opened", "person")]
    assert operations[0].event.best_bbox == [5, 5, 9, 9]
    assert operations[0].event.peak_confidence == 0.8


def test_classes_are_tracked_independently():
    tracker = EventTracker(gap_seconds=1)
    tracker.observe(0, [person(0.7), car(0.6)])
    operations = tracker.observe(500, [car(0.6)])
    assert kinds(operations) == [("Extended", "car")]
    operations = tracker.observe(1_400, [car(0.6)])
    assert kinds(operations) == [("Closed", "person"), ("Extended", "car")]


def test_a_gap_within_the_tolerance_does_not_split_the_event():
    tracker = EventTracker(gap_seconds=2)
    first = tracker.observe(0, [person(0.7)])[0].event
    assert tracker.observe(1_000, []) == []
    # 2 s after it was last seen is still within the tolerance.
    operations = tracker.observe(2_000, [person(0.7)])
    assert kinds(operations) == [("Extended", "person")]
    assert operations[0].event is first


def test_a_gap_longer_than_the_tolerance_closes_the_event_and_a_return_opens_a_new_one():
    tracker = EventTracker(gap_seconds=2)
    first = tracker.observe(0, [person(0.7)])[0].event
    tracker.observe(500, [person(0.7)])
    operations = tracker.observe(2_501, [person(0.7)])
    assert kinds(operations) == [("Closed", "person"), ("Opened", "person")]
    assert operations[0].event is first
    assert first.closed
    # The event ends when the person was last seen, not when the closing was noticed.
    assert first.last_seen_ms == 500
    assert operations[1].event is not first


def test_empty_frames_close_an_event_once_the_gap_has_passed():
    tracker = EventTracker(gap_seconds=2)
    tracker.observe(0, [person(0.7)])
    assert tracker.observe(2_000, []) == []
    assert kinds(tracker.observe(2_001, [])) == [("Closed", "person")]
    assert tracker.open == {}


def test_close_stale_uses_the_time_it_is_given():
    tracker = EventTracker(gap_seconds=2)
    tracker.observe(0, [person(0.7)])
    assert tracker.close_stale(1_500) == []
    assert kinds(tracker.close_stale(5_000)) == [("Closed", "person")]


def test_close_all_ends_every_open_event():
    tracker = EventTracker(gap_seconds=2)
    tracker.observe(0, [person(0.7), car(0.5)])
    closed = tracker.close_all()
    assert sorted(op.event.label for op in closed) == ["car", "person"]
    assert all(isinstance(op, Closed) and op.event.closed for op in closed)
    assert tracker.open == {}


def test_a_zero_tolerance_splits_on_every_missed_frame():
    tracker = EventTracker(gap_seconds=0)
    tracker.observe(0, [person(0.7)])
    assert kinds(tracker.observe(0, [person(0.7)])) == [("Extended", "person")]
    assert kinds(tracker.observe(1, [person(0.7)])) == [("Closed", "person"), ("Opened", "person")]


def test_a_negative_tolerance_is_refused():
    with pytest.raises(ValueError):
        EventTracker(gap_seconds=-1)


def test_a_session_counts_frames_and_events_started_per_class():
    tracker = EventTracker(gap_seconds=1)
    tally = SessionTally(started_ms=0, last_frame_ms=0)
    frames = [
        (0, [person(0.7)]),
        (100, [person(0.7), car(0.5)]),
        (200, []),
        (1_500, [person(0.6)]),  # the first person event closed; this is a second one
        (1_900, [person(0.6)]),
    ]
    for timestamp, detections in frames:
        tally.add_frame(timestamp, tracker.observe(timestamp, detections))
    assert tally.frames_processed == 5
    assert tally.counts == {"person": 2, "car": 1}
    assert tally.measured_fps == pytest.approx(4 / 1.9, abs=0.01)


def test_a_session_with_one_frame_has_no_measured_fps_yet():
    tally = SessionTally(started_ms=0, last_frame_ms=0)
    tally.add_frame(0, [])
    assert tally.measured_fps == 0.0


def test_operations_are_the_three_documented_kinds():
    tracker = EventTracker(gap_seconds=0)
    operations = tracker.observe(0, [person(0.5)]) + tracker.observe(0, [person(0.6)])
    operations += tracker.close_all()
    assert [type(op) for op in operations] == [Opened, Extended, Closed]


def test_a_presence_longer_than_the_longest_event_continues_in_a_new_event():
    tracker = EventTracker(gap_seconds=2, max_seconds=10)
    first = tracker.observe(0, [person(0.7)])[0].event
    for timestamp in range(1_000, 10_000, 1_000):
        assert kinds(tracker.observe(timestamp, [person(0.7)])) == [("Extended", "person")]
    operations = tracker.observe(10_000, [person(0.7)])
    assert kinds(operations) == [("Closed", "person"), ("Opened", "person")]
    assert operations[0].event is first and first.last_seen_ms == 9_000
    assert operations[1].event.started_ms == 10_000


def test_without_a_longest_event_a_presence_is_never_cut():
    tracker = EventTracker(gap_seconds=2)
    first = tracker.observe(0, [person(0.7)])[0].event
    for timestamp in range(1_000, 3_600_000, 1_000):  # an hour, once a second
        assert kinds(tracker.observe(timestamp, [person(0.7)])) == [("Extended", "person")]
    assert first.frames_seen == 3_600


def tracked(track_id: int, confidence: float = 0.7, bbox=(10, 10, 20, 40), label="person") -> dict:
    return {"class": label, "confidence": confidence, "bbox": list(bbox), "track_id": track_id}


def test_two_tracked_people_are_two_events_each_with_its_own_box():
    tracker = EventTracker(gap_seconds=2)
    operations = tracker.observe(
        0, [tracked(1, 0.6, (0, 0, 10, 20)), tracked(2, 0.9, (50, 0, 10, 20))], frame="both"
    )
    assert kinds(operations) == [("Opened", "person"), ("Opened", "person")]
    first, second = (operation.event for operation in operations)
    assert (first.track_id, second.track_id) == (1, 2)
    # Each snapshot marks its own object, not every person in the frame.
    assert first.best_frame_boxes == [([0, 0, 10, 20], 0.6)]
    assert second.best_frame_boxes == [([50, 0, 10, 20], 0.9)]
    tally = SessionTally(started_ms=0, last_frame_ms=0)
    tally.add_frame(0, operations)
    assert tally.counts == {"person": 2}


def test_a_tracked_object_closes_on_its_own_while_another_stays():
    tracker = EventTracker(gap_seconds=1)
    tracker.observe(0, [tracked(1), tracked(2)])
    operations = tracker.observe(800, [tracked(2)])
    assert [type(op).__name__ for op in operations] == ["Extended"]
    operations = tracker.observe(1_500, [tracked(2)])
    assert [(type(op).__name__, op.event.track_id) for op in operations] == [
        ("Closed", 1),
        ("Extended", 2),
    ]


def test_motion_stays_one_presence_beside_tracked_objects():
    tracker = EventTracker(gap_seconds=2)
    motion = {"class": "motion", "confidence": 0.5, "bbox": [0, 0, 5, 5]}
    operations = tracker.observe(0, [motion, dict(motion, bbox=[9, 9, 5, 5]), tracked(4)])
    assert sorted((op.event.label, op.event.track_id) for op in operations) == [
        ("motion", None),
        ("person", 4),
    ]


def test_the_path_holds_the_boxes_in_fractions_of_the_frame_and_ends_at_the_newest():
    tracker = EventTracker(gap_seconds=2)
    for step in range(4):
        tracker.observe(
            1_000 + step * 100, [tracked(1, bbox=(10 * step, 48, 64, 96))], frame_size=(640, 480)
        )
    (event,) = tracker.open.values()
    points = event.path.points
    assert points[0] == [0, 0.0, 0.1, 0.1, 0.2]
    # One point per PATH_FIRST_INTERVAL_MS (200 ms), and the newest sighting last.
    assert [point[0] for point in points] == [0, 200, 300]
    assert points[-1] == [300, 0.0469, 0.1, 0.1, 0.2]


def test_a_long_path_stays_bounded_and_spans_the_whole_event():
    tracker = EventTracker(gap_seconds=2)
    frames = 3_000  # five minutes at 10 fps
    for step in range(frames):
        tracker.observe(
            step * 100, [tracked(1, bbox=(step % 600, 0, 10, 10))], frame_size=(640, 480)
        )
    (event,) = tracker.open.values()
    offsets = [point[0] for point in event.path.points]
    assert len(offsets) <= PATH_MAX_POINTS + 1
    assert offsets[0] == 0 and offsets[-1] == (frames - 1) * 100
    assert offsets == sorted(offsets)
    # Evenly spread: no two kept points closer than the first interval.
    assert min(b - a for a, b in zip(offsets, offsets[1:], strict=False)) >= PATH_FIRST_INTERVAL_MS
