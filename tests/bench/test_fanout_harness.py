"""The fan-out benchmark's harness, run small against its baseline so it cannot silently rot."""

from __future__ import annotations

import json
import os
import socketserver
import threading

import pytest

from bench.fanout import Load, Target, baseline_server, frame_timestamp, measure, ratios


def test_it_reads_the_timestamp_without_parsing_the_frame():
    message = json.dumps(
        {"frame": "QUJD+/==" * 1000, "timestamp": 1700000000123, "camera_id": "c", "detections": []}
    ).encode()

    assert frame_timestamp(message) == 1700000000123.0
    assert frame_timestamp(b'xx{"timestamp": 12.5}yy', 2, 21) == 12.5
    with pytest.raises(ValueError):
        frame_timestamp(b'{"frame": "abc", "camera_id": "c"}')


def _figures(fps: float, p99: float, rss_end: float = 100.0) -> dict:
    return {
        "fps_mean": fps,
        "latency_ms_p99": p99,
        "failed": 0,
        "server_rss_mib_start": 100.0,
        "server_rss_mib_end": rss_end,
    }


def test_it_judges_the_targets_as_ratios_to_the_baseline():
    baseline = [_figures(30.0, 20.0)]

    assert ratios(baseline, [_figures(29.5, 29.0)])["meets_targets"]
    assert not ratios(baseline, [_figures(29.0, 20.0)])["meets_targets"]
    assert not ratios(baseline, [_figures(30.0, 31.0)])["meets_targets"]
    assert not ratios(baseline, [_figures(30.0, 20.0, rss_end=200.0)])["meets_targets"]


def test_repeated_runs_compare_medians_but_keep_the_worst_memory_growth():
    baselines = [_figures(30.0, 20.0), _figures(30.0, 90.0), _figures(30.0, 21.0)]
    sightlines = [_figures(30.0, 25.0), _figures(30.0, 300.0), _figures(30.0, 30.0, 120.0)]

    ratio = ratios(baselines, sightlines)

    assert ratio["p99_ratio"] == 30.0 / 21.0
    assert ratio["rss_growth_mib"] == 20.0
    assert not ratio["meets_targets"]


def test_the_baseline_serves_every_viewer_at_the_camera_rate(tmp_path):
    load = Load(viewers=3, slow=1, seconds=2.0, warmup=0.5, processes=1)

    with baseline_server(fps=30, jpeg_quality=80, log_dir=tmp_path) as target:
        result = measure(target, load)

    assert result["failed"] == 0, result["errors"]
    assert result["fps_min"] > 20
    assert result["fps_mean"] <= result["source_fps"] < 32
    assert 0 < result["latency_ms_p50"] <= result["latency_ms_p99"] < 1000
    # A 640x480 JPEG in base64 inside the seed's JSON.
    assert 20 < result["payload_kib_mean"] < 200
    assert result["slow_failed"] == 0
    assert 1 <= result["slow_frames_mean"] <= 3
    assert result["server_rss_mib_start"] > 0


class _Refuser(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")


def test_a_refused_viewer_counts_as_failed():
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Refuser) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        target = Target(
            name="refuser",
            url=f"ws://127.0.0.1:{port}/ws/stream/x",
            headers={"Authorization": "Bearer nothing"},
            pid=os.getpid(),
            all_pids=(os.getpid(),),
        )
        try:
            result = measure(target, Load(viewers=2, slow=0, seconds=0.5, warmup=0.1, processes=1))
        finally:
            server.shutdown()

    assert result["failed"] == 2
    assert result["fps_mean"] == 0.0
    assert result["errors"] == ["refused: HTTP/1.1 403 Forbidden"]
