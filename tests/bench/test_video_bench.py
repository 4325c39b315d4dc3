"""The video benchmark's harness, run small so it cannot silently rot: the real encoders offline,
then a real daphne with a `demo:` camera and viewers of every format, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.video import MID_GOP, SSIM_C1, ssim

ROOT = Path(__file__).resolve().parents[2]


def test_ssim_is_the_standard_formula():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (64, 80)).astype(np.float32)

    assert ssim(image, image) == pytest.approx(1.0)
    # Flat images: only the luminance term is left, (2 x y + C1) / (x² + y² + C1).
    flat = np.full((32, 32), 100.0, dtype=np.float32)
    expected = (2 * 100 * 110 + SSIM_C1) / (100**2 + 110**2 + SSIM_C1)
    assert ssim(flat, flat + 10) == pytest.approx(expected, rel=1e-5)
    noisier = [ssim(image, image + rng.normal(0, sigma, image.shape)) for sigma in (2, 10, 40)]
    assert 1 > noisier[0] > noisier[1] > noisier[2] > 0


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, "DJANGO_SECRET_KEY": "bench-only-secret-key"}
    env.pop("DATABASE_URL", None)  # the server gets its own SQLite file, never the test database
    completed = subprocess.run(
        [sys.executable, "-m", "bench.video", "--frames", "45", "--bytes-viewers", "1"]
        + ["--join-viewers", "1", "--repeat", "1"]
        + ["--viewers", "3", "--seconds", "1.5", "--warmup", "0.5", "--processes", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| FrameData JSON" in completed.stdout and "| `?format=h264` |" in completed.stdout
    written = completed.stdout.rsplit("results: ", 1)[1].strip()
    result = json.loads(Path(written).read_text())
    Path(written).unlink()
    return result


def test_offline_every_path_encodes_the_same_frames_and_is_measured(report):
    offline = report["offline"]
    jpeg, (h264,) = offline["jpeg"], offline["h264"]

    assert report["machine"]["cpus"] >= 1 and report["machine"]["ram_gib"] > 0
    assert h264["frames_encoded"] == offline["frames"] == 45
    assert h264["key_frames"] >= 1 and h264["codec"].startswith("avc1.42")
    # base64 is 4/3 of the JPEG; H.264 is far smaller than either.
    assert 1.2 < jpeg["json_bytes_per_second"] / jpeg["binary_bytes_per_second"] < 1.45
    assert h264["wire_bytes_per_second"] < jpeg["binary_bytes_per_second"] / 2
    assert h264["wire_bytes_per_second"] > h264["fragment_bytes_per_second"]
    for similarity in (jpeg["ssim_mean"], h264["ssim_mean"], h264["ssim_native_luma_mean"]):
        assert 0.5 < similarity < 1
    for timing in (jpeg["encode"], jpeg["encode_again"], h264["encode"]):
        assert 0 < timing["ms_p50"] <= timing["ms_p99"] <= timing["ms_max"] < 1000


def test_live_every_format_is_received_over_the_same_window(report):
    groups = report["live"]["bytes"]["groups"]

    assert set(groups) == {"json", "binary", "h264", MID_GOP}
    for group in (groups["json"], groups["binary"], groups["h264"]):
        assert group["failed"] == 0, group["errors"]
        assert group["fps_mean"] > 10
        assert 0 < group["latency_ms_p50"] <= group["latency_ms_p99"] < 1000
    rates = {
        name: groups[name]["bytes_per_second_per_viewer"] for name in ("json", "binary", "h264")
    }
    assert rates["h264"] < rates["binary"] < rates["json"]


def test_live_h264_viewers_get_the_protocol_and_a_stream_that_decodes(report):
    h264 = report["live"]["bytes"]["groups"]["h264"]

    assert h264["protocol_errors"] == []
    assert h264["first_kinds"] == ["jpeg/init/video"]
    assert h264["decoded"]["error"] == ""
    assert h264["decoded"]["frames"] == h264["decoded"]["fragments"] > 10
    assert h264["decoded"]["size"] == "640x480"


def test_live_an_h264_viewer_joining_mid_group_gets_the_group_at_once_and_it_decodes(report):
    joiner = report["live"]["bytes"]["groups"][MID_GOP]

    assert joiner["failed"] == 0, joiner["errors"]
    assert joiner["protocol_errors"] == []
    assert joiner["first_kinds"] == ["jpeg/init/video"]
    assert joiner["join_burst_fragments_mean"] >= 1
    assert joiner["decoded"]["error"] == ""
    assert joiner["decoded"]["frames"] == joiner["decoded"]["fragments"] > 0


def test_live_h264_viewers_joining_get_a_picture_then_video_while_jpeg_viewers_watch(report):
    join = report["live"]["join"]
    groups = join["groups"]

    assert 0 < join["join_after"] < join["seconds"]
    for name in ("json", "binary"):
        assert groups[name]["failed"] == 0, groups[name]["errors"]
        assert groups[name]["fps_mean"] > 10
        assert groups[name]["max_gap_ms"] > 0
        phases = groups[name]["phases"]
        assert phases["before_samples"] > 0 and phases["after_samples"] > 0
        assert 0 < phases["before_p50"] <= phases["before_p99"] < 1000
    joining = groups["h264"]
    assert joining["failed"] == 0, joining["errors"]
    assert joining["first_kinds"] == ["jpeg/init/video"]
    assert 0 < joining["join_first_jpeg_ms_p50"] <= joining["join_first_video_ms_p50"] < 5000


def test_live_fanout_measures_each_format_alone(report):
    fanout = report["live"]["fanout"]

    assert [(r["viewers"], r["run"], r["format"]) for r in fanout] == [
        (3, 1, "binary"),
        (3, 1, "h264"),
    ]
    (ratio,) = report["live"]["fanout_ratios"]
    assert ratio["viewers"] == 3 and ratio["bytes_ratio"] < 0.5
    for run in fanout:
        group = run["groups"][run["format"]]
        assert group["failed"] == 0, group["errors"]
        assert group["fps_mean"] > 10
        assert run["server_cpu_percent"] > 0
        assert run["server_rss_mib_start"] > 0
