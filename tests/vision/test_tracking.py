"""The multi-object tracker alone: ids that persist across frames, crossings and occlusions."""

from __future__ import annotations

import pytest

from cameras.vision.tracking import ObjectTracker, box_iou

FRAME_MS = 100  # 10 fps


def box(label: str, x: float, y: float, w: float = 40, h: float = 80) -> dict:
    return {"class": label, "confidence": 0.9, "bbox": [int(x), int(y), int(w), int(h)]}


def ids(detections: list[dict]) -> list[int | None]:
    return [detection.get("track_id") for detection in detections]


def test_one_object_keeps_its_id_while_it_moves():
    tracker = ObjectTracker(max_lost_ms=1000)
    seen = set()
    for frame in range(30):
        detections = [box("person", 10 + 12 * frame, 100)]
        tracker.update(detections, frame * FRAME_MS)
        seen.update(ids(detections))
    assert seen == {1}


def test_two_objects_crossing_keep_their_own_ids():
    """Two people walk towards each other on the same line and pass through each other: the
    motion model, not the position alone, says who is who after the crossing."""
    tracker = ObjectTracker(max_lost_ms=1000)
    left_ids, right_ids = set(), set()
    for frame in range(40):
        left = box("person", 20 + 14 * frame, 100)
        right = box("person", 580 - 14 * frame, 104)
        # The detector's order changes from frame to frame; it must not matter.
        detections = [left, right] if frame % 2 else [right, left]
        tracker.update(detections, frame * FRAME_MS)
        left_ids.add(left["track_id"])
        right_ids.add(right["track_id"])
    assert len(left_ids) == 1 and len(right_ids) == 1
    assert left_ids != right_ids


def test_an_object_hidden_for_a_moment_comes_back_under_its_id():
    tracker = ObjectTracker(max_lost_ms=1000)
    for frame in range(10):
        first = [box("person", 10 + 10 * frame, 100)]
        tracker.update(first, frame * FRAME_MS)
    # Hidden behind a pillar for 0.6 s while it walks on.
    for frame in range(10, 16):
        tracker.update([], frame * FRAME_MS)
    back = [box("person", 10 + 10 * 16, 100)]
    tracker.update(back, 16 * FRAME_MS)
    assert ids(back) == ids(first) == [1]


def test_an_object_gone_for_longer_than_the_limit_gets_a_new_id():
    tracker = ObjectTracker(max_lost_ms=1000)
    first = [box("person", 100, 100)]
    tracker.update(first, 0)
    tracker.update([], 500)
    again = [box("person", 100, 100)]
    tracker.update(again, 1_600)
    assert ids(first) == [1]
    assert ids(again) == [2]
    assert tracker.track_count == 1


def test_a_fast_object_at_a_low_frame_rate_keeps_its_id():
    """A car at 5 fps moves more than its own width between two detections."""
    tracker = ObjectTracker(max_lost_ms=1000)
    seen = set()
    for frame in range(15):
        detections = [box("car", 10 + 45 * frame, 300, w=40, h=30)]
        tracker.update(detections, frame * 200)
        seen.update(ids(detections))
    assert seen == {1}


def test_classes_are_tracked_apart_and_motion_is_not_tracked():
    tracker = ObjectTracker(max_lost_ms=1000)
    detections = [box("person", 100, 100), box("car", 100, 100), box("motion", 100, 100)]
    tracker.update(detections, 0)
    assert ids(detections) == [1, 2, None]
    detections = [box("car", 102, 100), box("person", 101, 100), box("motion", 100, 100)]
    tracker.update(detections, FRAME_MS)
    assert ids(detections) == [2, 1, None]


def test_a_far_away_detection_is_a_new_object_not_a_jump():
    tracker = ObjectTracker(max_lost_ms=1000)
    first = [box("person", 10, 10)]
    tracker.update(first, 0)
    far = [box("person", 500, 300)]
    tracker.update(far, FRAME_MS)
    assert ids(far) == [2]


def test_a_frame_out_of_order_does_not_break_the_tracks():
    tracker = ObjectTracker(max_lost_ms=1000)
    tracker.update([box("person", 100, 100)], 1_000)
    late = [box("person", 99, 100)]
    tracker.update(late, 900)  # an ingest request that arrived late
    assert ids(late) == [1]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 10, 10], 50 / 150),
        ([0, 0, 10, 10], [10, 0, 10, 10], 0.0),
    ],
)
def test_box_iou(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)


def test_a_track_is_left_out_until_it_is_confirmed():
    tracker = ObjectTracker(max_lost_ms=1000, min_hits=3)
    motion = box("motion", 0, 0)
    kept = [
        tracker.update([box("person", 100 + step, 100), motion], step * FRAME_MS)
        for step in range(4)
    ]
    assert kept[0] == kept[1] == [motion]
    assert [d.get("track_id") for d in kept[2]] == [1, None]
    assert [d.get("track_id") for d in kept[3]] == [1, None]


def test_a_one_off_false_positive_never_gets_out():
    tracker = ObjectTracker(max_lost_ms=1000, min_hits=3)
    out = []
    for step in range(20):
        found = [box("person", 100 + 5 * step, 100)]
        if step in (7, 8):
            found.append(box("person", 500, 20, w=90, h=180))  # two frames, then gone
        out.append(tracker.update(found, step * FRAME_MS))
    assert {d["track_id"] for frame in out for d in frame} == {1}


@pytest.mark.parametrize("arguments", [{"max_lost_ms": -1}, {"max_lost_ms": 10, "min_hits": 0}])
def test_bad_limits_are_refused(arguments):
    with pytest.raises(ValueError):
        ObjectTracker(**arguments)
