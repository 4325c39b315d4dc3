"""The frame pipeline benchmark's harness, run very briefly so it cannot silently rot."""

from __future__ import annotations

import pytest
from django.test import override_settings

from bench.pipeline import (
    TRACKED,
    VARIANTS,
    camera_config,
    measure_tracker,
    measure_viewer_bytes,
    report,
    run,
    tracker_bypassed,
)
from cameras.pipeline import FramePipeline


@pytest.fixture(scope="module")
def result() -> dict:
    with override_settings(EVENTS_RECORDING=False):
        return run(seconds=0.2, rounds=2, bytes_scene_seconds=1.0)


def by_name(result: dict) -> dict[str, dict]:
    return {variant["name"]: variant for variant in result["variants"]}


def test_every_variant_is_measured_in_every_round(result):
    assert [variant["name"] for variant in result["variants"]] == [v.name for v in VARIANTS]
    for variant in result["variants"]:
        assert len(variant["rounds"]) == 2
        assert variant["frames"] == sum(r["frames"] for r in variant["rounds"]) > 0
        assert variant["fps"] > 0
        assert 0 < variant["ms_p50"] <= variant["ms_p99"]
        assert variant["cpu_ms_per_frame"] > 0


def test_costs_are_relative_to_the_baseline_of_the_same_run(result):
    baseline, *others = result["variants"]

    assert baseline["cost_percent"] == baseline["cpu_cost_percent"] == 0
    # HOG costs several times what motion does on any machine.
    assert all(variant["cost_percent"] > 50 for variant in others)


def test_only_tracked_variants_see_tracks_and_only_zoned_ones_see_zones(result):
    variants = by_name(result)
    untracked = variants["motion+person untracked"]

    assert untracked["person_detections"] > 0
    assert untracked["tracks_seen"] == 0
    assert variants[TRACKED.name]["tracks_seen"] > 0
    assert variants[TRACKED.name]["detections_in_zones"] == 0
    assert variants["tracked + 4 zones"]["detections_in_zones"] > 0


def test_the_machine_and_the_load_are_recorded(result):
    machine = result["machine"]

    assert machine["cpus"] > 0
    assert len(machine["load_average_before"]) == len(machine["load_average_after"]) == 3
    assert len(machine["load_average_per_round"]) == result["rounds"] == 2
    assert result["events_recording"] is False


def test_the_report_names_every_variant(result):
    text = report(result)

    assert all(variant.name in text for variant in VARIANTS)
    assert "ObjectTracker.update" in text


def test_the_tracker_is_timed_with_every_object_tracked():
    figures = measure_tracker(counts=(1, 5), calls=20)

    assert [f["objects"] for f in figures] == [1, 5]
    assert [f["tracks"] for f in figures] == [1, 5]
    assert all(0 < f["us_p50"] <= f["us_p99"] for f in figures)


@override_settings(EVENTS_RECORDING=False)
def test_a_grid_tile_costs_a_viewer_a_fraction_of_the_full_stream():
    figures = measure_viewer_bytes(scene_seconds=1.0)
    full, tile = figures["full"], figures["tile"]

    assert (full["frames"], tile["frames"]) == (10, 5)
    assert tile["binary_bytes_per_second"] < full["binary_bytes_per_second"] / 2
    # The seed's JSON carries the JPEG in base64: a third more than the binary payload.
    assert full["json_bytes_per_second"] > 1.3 * full["binary_bytes_per_second"]
    assert 0 < figures["tile_percent_of_full_binary"] < 50


def test_the_tracker_comes_back_after_the_bypass_even_on_error():
    pipeline = FramePipeline(camera_config(TRACKED))
    tracker = pipeline._tracker

    with pytest.raises(RuntimeError), tracker_bypassed(pipeline):
        assert pipeline._tracker is not tracker
        raise RuntimeError("a failed round")

    assert pipeline._tracker is tracker
