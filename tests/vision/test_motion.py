from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cameras.vision.demo import DemoScene
from cameras.vision.detectors import (
    Detection,
    DetectorConfigError,
    MotionDetector,
    build_detectors,
    merge_boxes,
    run_detectors,
)
from cameras.vision.sources import open_source
from cameras.zones import Polygon

WIDTH, HEIGHT = 640, 480
BOX_W, BOX_H = 80, 60


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    overlap = overlap_w * overlap_h
    return overlap / (aw * ah + bw * bh - overlap)


def contains_centre(box: tuple[int, int, int, int], target: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    centre_x, centre_y = target[0] + target[2] / 2, target[1] + target[3] / 2
    return x <= centre_x <= x + w and y <= centre_y <= y + h


def textured_background() -> np.ndarray:
    rng = np.random.default_rng(7)
    background = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    background[:] = np.linspace(60, 180, WIDTH, dtype=np.uint8)[None, :, None]
    noise = rng.normal(0, 4, (HEIGHT, WIDTH, 1))
    cv2.circle(background, (500, 120), 60, (30, 120, 30), -1)
    return np.clip(background + noise, 0, 255).astype(np.uint8)


def rectangle_position(index: int) -> tuple[int, int, int, int]:
    """Where the moving rectangle is in frame `index`: left to right, 12 px a frame."""
    return 40 + 12 * index, 200, BOX_W, BOX_H


def write_moving_rectangle_video(path: Path, count: int = 40, enters_at: int = 8) -> Path:
    """Still background for `enters_at` frames, then a red rectangle crossing it."""
    background = textured_background()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(count):
        frame = background.copy()
        if index >= enters_at:
            x, y, w, h = rectangle_position(index - enters_at)
            cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), (20, 40, 230), -1)
        writer.write(frame)
    writer.release()
    return path


def red_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """Where the red rectangle really is in a decoded frame (the source may skip frames)."""
    red = (frame[..., 2] > 180) & (frame[..., 1] < 100)
    return cv2.boundingRect(red.astype(np.uint8))


def test_motion_boxes_follow_a_rectangle_moving_in_a_video_file(tmp_path):
    video = write_moving_rectangle_video(tmp_path / "moving.avi")
    source = open_source(str(video))
    detector = MotionDetector()
    try:
        for index in range(36):
            frame = source.read()
            detections = detector.detect(frame)
            if red_box(frame)[2] == 0:
                assert detections == [], (index, detections)
                continue
            assert len(detections) == 1, (index, detections)
            assert iou(detections[0].bbox, red_box(frame)) > 0.6, (index, detections)
    finally:
        source.close()


def test_motion_is_found_within_a_few_frames_of_appearing():
    background = textured_background()
    detector = MotionDetector()
    for _ in range(10):
        assert detector.detect(background.copy()) == []
    found_at = None
    for index in range(10):
        frame = background.copy()
        x, y, w, h = rectangle_position(index)
        cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), (20, 40, 230), -1)
        detections = detector.detect(frame)
        if detections and iou(detections[0].bbox, (x, y, w, h)) > 0.6:
            found_at = index
            break
    assert found_at is not None and found_at <= 2


def test_a_static_scene_has_no_motion_after_warm_up():
    scene = DemoScene()
    still = scene.frame_at(1_700_000_000.0)
    detector = MotionDetector()
    results = [detector.detect(still.copy()) for _ in range(40)]
    assert all(detections == [] for detections in results)


def test_camera_noise_alone_is_not_motion():
    background = textured_background()
    rng = np.random.default_rng(3)
    detector = MotionDetector()
    for index in range(40):
        noisy = np.clip(background + rng.normal(0, 3, background.shape), 0, 255).astype(np.uint8)
        detections = detector.detect(noisy)
        if index >= 10:
            assert detections == [], index


def test_motion_finds_the_demo_scenes_moving_objects():
    scene = DemoScene(seed=1)
    detector = MotionDetector()
    start = 1_700_000_000.0
    found = {"person": 0, "car": 0, "ball": 0}
    seen = dict.fromkeys(found, 0)
    for index in range(150):
        t = start + index / 30
        detections = detector.detect(scene.frame_at(t))
        if index < 10:
            continue
        truths = {"person": scene.person_box(t), "car": scene.car_box(t), "ball": scene.ball_box(t)}
        for name, truth in truths.items():
            if truth[0] < 0 or truth[0] + truth[2] > WIDTH:
                continue  # the car entering or leaving the picture
            seen[name] += 1
            found[name] += any(contains_centre(d.bbox, truth) for d in detections)
    for name in found:
        assert seen[name] > 0
        assert found[name] / seen[name] >= 0.75, (name, found, seen)


def test_a_scene_change_resets_the_model_instead_of_boxing_everything():
    detector = MotionDetector()
    dark = np.full((HEIGHT, WIDTH, 3), 30, dtype=np.uint8)
    for _ in range(10):
        detector.detect(dark)
    assert detector.detect(np.full((HEIGHT, WIDTH, 3), 220, dtype=np.uint8)) == []


def test_a_new_picture_size_restarts_the_background_model():
    detector = MotionDetector()
    for _ in range(10):
        detector.detect(textured_background())
    assert detector.detect(cv2.resize(textured_background(), (320, 240))) == []


def test_motion_detections_are_well_formed():
    video_frames = [textured_background() for _ in range(8)]
    detector = MotionDetector()
    for frame in video_frames:
        detector.detect(frame)
    frame = textured_background()
    cv2.rectangle(frame, (600, 440), (700, 520), (0, 0, 255), -1)  # partly outside the frame
    (detection,) = detector.detect(frame)
    as_dict = detection.as_dict()
    assert as_dict["class"] == "motion"
    assert 0 < as_dict["confidence"] <= 1
    x, y, w, h = as_dict["bbox"]
    assert all(isinstance(value, int) for value in as_dict["bbox"])
    assert x + w <= WIDTH and y + h <= HEIGHT


def test_nearby_boxes_are_merged():
    assert merge_boxes([(0, 0, 10, 10), (12, 0, 10, 10), (100, 100, 5, 5)], gap=2) == [
        (0, 0, 22, 10),
        (100, 100, 5, 5),
    ]
    assert merge_boxes([(0, 0, 10, 10), (5, 5, 10, 10), (14, 14, 10, 10)]) == [(0, 0, 24, 24)]


def test_detection_as_dict_rounds_and_clamps_confidence():
    detection = Detection("car", 0.123456, (1, 2, 3, 4))
    assert detection.as_dict() == {"class": "car", "confidence": 0.123, "bbox": [1, 2, 3, 4]}
    assert Detection("car", 1.7, (0, 0, 1, 1)).as_dict()["confidence"] == 1.0


def test_build_detectors_gives_each_camera_its_own_motion_model():
    first, second = build_detectors(["motion"]), build_detectors(["motion"])
    assert first[0] is not second[0]
    assert [detector.name for detector in build_detectors(["motion", "motion"])] == ["motion"]


def test_build_detectors_refuses_an_unknown_name():
    with pytest.raises(DetectorConfigError, match="unknown detector 'cat'"):
        build_detectors(["motion", "cat"])


def test_build_detectors_refuses_a_confidence_outside_0_to_1():
    with pytest.raises(DetectorConfigError, match="between 0 and 1"):
        build_detectors(["motion"], min_confidence=1.5)


def test_run_detectors_runs_them_all_on_the_frame():
    detectors = build_detectors(["motion"])
    background = textured_background()
    for _ in range(8):
        assert run_detectors(detectors, background) == []
    frame = background.copy()
    cv2.rectangle(frame, (100, 100), (200, 200), (0, 0, 255), -1)
    assert [d.label for d in run_detectors(detectors, frame)] == ["motion"]


def _rectangle_crossing(detector: MotionDetector, frames: int = 40) -> list[list[Detection]]:
    """The red rectangle crossing the textured background, left to right, through `detector`."""
    background = textured_background()
    for _ in range(10):
        detector.detect(background.copy())
    results = []
    for index in range(frames):
        frame = background.copy()
        x, y, w, h = rectangle_position(index)
        cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), (20, 40, 230), -1)
        results.append(detector.detect(frame))
    return results


def test_a_motion_mask_over_the_whole_path_leaves_no_motion():
    band = Polygon("Road", ((0.0, 0.3), (1.0, 0.3), (1.0, 0.7), (0.0, 0.7)))
    results = _rectangle_crossing(MotionDetector(masks=[band]))
    assert all(detections == [] for detections in results)


def test_motion_inside_a_mask_is_ignored_and_outside_it_found():
    # The left half of the frame is masked (a tree, say): the rectangle is seen only once it
    # has moved into the right half, and every box then lies right of the mask.
    left_half = Polygon("Tree", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
    results = _rectangle_crossing(MotionDetector(masks=[left_half]))
    for index, detections in enumerate(results):
        x, _, w, _ = rectangle_position(index)
        if x + w <= WIDTH / 2:
            assert detections == [], (index, detections)
        for detection in detections:
            assert detection.bbox[0] >= WIDTH / 2 - 2, (index, detection)
    unmasked = [i for i, _ in enumerate(results) if rectangle_position(i)[0] > WIDTH / 2]
    assert unmasked and all(results[i] for i in unmasked)


def test_build_detectors_hands_the_cameras_masks_to_motion_only():
    tree = Polygon("Tree", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
    motion, *_ = build_detectors(["motion"], motion_masks=(tree,))
    results = _rectangle_crossing(motion, frames=12)
    assert all(detections == [] for detections in results)
