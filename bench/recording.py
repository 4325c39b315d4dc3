"""Recording benchmark: frames per second the capture pipeline sustains on the `demo:` scene with
events recorded versus without, in the same run.

    python -m bench.recording --seconds 10 --rounds 2 --detectors motion

Per frame, as the frame pipeline does it (cameras/pipeline.py), minus the network: render the demo
scene at the next 30 fps instant, resize, run the detectors, JPEG-encode, and (when recording)
`Recorder.record_frame`, with the recorder's flusher thread writing events, sessions and
snapshots to a real database and storage in the background. Frames are processed as fast as the
machine allows (no pacing), so the figure is the pipeline's ceiling. Modes alternate
(off, on, off, on, ...) for `--rounds` rounds of `--seconds` each, so drift hits both alike.

The machine may be shared: medians are reported, and next to wall-clock fps the frames per CPU
second of this process (all its threads, the recorder's flusher included), which other
processes' load disturbs much less.

A second, deterministic measurement counts the queries recording costs: 30 s of scene time at
30 fps recorded with a flush every 30 frames (once a scene second), under Django's query capture.

The database is a fresh SQLite file in a temporary folder unless DATABASE_URL is set (then it
must be an empty, migratable database you own). Snapshots go to a temporary MEDIA_ROOT.
Results are printed and written to bench/results/recording-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
SCENE_FPS = 30.0


def setup_django(work_dir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work_dir / 'bench.sqlite3'}")
    os.environ["MEDIA_ROOT"] = str(work_dir / "media")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def bench_camera(bench: str, *, detectors: list[str] | None = None):
    """A `demo:bench` camera in an organization of the benchmark's own (`bench` names both)."""
    from django.contrib.auth import get_user_model

    from cameras.services import camera_create
    from organizations.services import organization_create

    user, _ = get_user_model().objects.get_or_create(username=f"bench-{bench}")
    organization = organization_create(name=f"Bench {bench}", owner=user)
    extra = {} if detectors is None else {"detectors": detectors}
    return camera_create(organization=organization, name="Bench demo", source="demo:bench", **extra)


class Pipeline:
    """One camera's per-frame work, as in FramePipeline.process, on virtual 30 fps time."""

    def __init__(self, *, detectors: list[str], width: int, height: int):
        from cameras.vision.demo import DemoScene, demo_seed
        from cameras.vision.detectors import build_detectors

        self.scene = DemoScene(width, height, seed=demo_seed("bench"))
        self.detectors = build_detectors(detectors)
        self.width = width
        self.t = time.time()

    def frame(self):
        from cameras.vision.detectors import run_detectors
        from cameras.vision.frames import encode_jpeg, resize_to_width

        self.t += 1.0 / SCENE_FPS
        frame = resize_to_width(self.scene.frame_at(self.t), self.width)
        detections = [d.as_dict() for d in run_detectors(self.detectors, frame)]
        encode_jpeg(frame, 75)
        return int(self.t * 1000), detections, frame


def configured_recorder(*, run_flusher: bool = True, clips=None):
    """A recorder with the configured rules (EVENT_GAP_SECONDS, EVENT_MAX_SECONDS, ...)."""
    from django.conf import settings

    from events.recording import Recorder

    return Recorder(
        gap_seconds=settings.EVENT_GAP_SECONDS,
        max_event_seconds=settings.EVENT_MAX_SECONDS,
        flush_seconds=settings.EVENTS_FLUSH_SECONDS,
        idle_seconds=settings.EVENTS_SESSION_IDLE_SECONDS,
        run_flusher=run_flusher,
        clips=clips,
    )


def _run_mode(pipeline: Pipeline, *, seconds: float, recorder, camera) -> dict:
    frames = 0
    record_seconds = 0.0
    cpu_started = time.process_time()  # every thread of this process: the flusher's work too
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        timestamp_ms, detections, frame = pipeline.frame()
        if recorder is not None:
            before = time.perf_counter()
            recorder.record_frame(
                camera=camera, timestamp_ms=timestamp_ms, detections=detections, frame=frame
            )
            record_seconds += time.perf_counter() - before
        frames += 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "frames": frames,
        "seconds": round(elapsed, 3),
        "fps": round(frames / elapsed, 2),
        "cpu_seconds": round(cpu, 3),
        "fps_per_cpu_second": round(frames / cpu, 2),
        "record_frame_us": round(record_seconds / frames * 1e6, 1) if recorder else None,
    }


def _query_budget(*, detectors: list[str], width: int, height: int, camera) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    pipeline = Pipeline(detectors=detectors, width=width, height=height)
    recorder = configured_recorder(run_flusher=False)
    frames = int(30 * SCENE_FPS)
    with CaptureQueriesContext(connection) as queries:
        for index in range(frames):
            timestamp_ms, detections, frame = pipeline.frame()
            recorder.record_frame(
                camera=camera, timestamp_ms=timestamp_ms, detections=detections, frame=frame
            )
            if index % int(SCENE_FPS) == int(SCENE_FPS) - 1:
                recorder.flush()
        recorder.close()
    return {"frames": frames, "flushes": recorder.flushes, "queries": len(queries)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each mode's run")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs to run")
    parser.add_argument("--detectors", default="motion", help="comma-separated detector names")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 < args.rounds <= 10:
        parser.error("--seconds must be in (0, 120] and --rounds in 1..10")

    with tempfile.TemporaryDirectory(prefix="sightline-bench-recording-") as work:
        setup_django(Path(work))
        from events.models import CameraSession, DetectionEvent

        detectors = [name.strip() for name in args.detectors.split(",") if name.strip()]
        camera = bench_camera("recording")
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        for _ in range(args.rounds):
            pipeline = Pipeline(detectors=detectors, width=args.width, height=args.height)
            runs["off"].append(
                _run_mode(pipeline, seconds=args.seconds, recorder=None, camera=camera)
            )
            recorder = configured_recorder(run_flusher=True)
            pipeline = Pipeline(detectors=detectors, width=args.width, height=args.height)
            runs["on"].append(
                _run_mode(pipeline, seconds=args.seconds, recorder=recorder, camera=camera)
            )
            recorder.close()
        stored = {
            "events": DetectionEvent.objects.count(),
            "events_with_snapshot": DetectionEvent.objects.exclude(snapshot="").count(),
            "sessions": CameraSession.objects.count(),
        }
        budget = _query_budget(
            detectors=detectors, width=args.width, height=args.height, camera=camera
        )
        from django.db import connection

        database = connection.vendor

    # Medians: the machine is shared, and one disturbed run must not move the figure.
    fps_off = statistics.median(run["fps"] for run in runs["off"])
    fps_on = statistics.median(run["fps"] for run in runs["on"])
    cpu_off = statistics.median(run["fps_per_cpu_second"] for run in runs["off"])
    cpu_on = statistics.median(run["fps_per_cpu_second"] for run in runs["on"])
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "database": database,
        "scene": f"demo: {args.width}x{args.height}, virtual {SCENE_FPS:g} fps",
        "detectors": detectors,
        "runs": runs,
        "fps_without_recording": round(fps_off, 2),
        "fps_with_recording": round(fps_on, 2),
        "cost_percent": round((fps_off - fps_on) / fps_off * 100, 1),
        "fps_per_cpu_second_without_recording": round(cpu_off, 2),
        "fps_per_cpu_second_with_recording": round(cpu_on, 2),
        "cpu_cost_percent": round((cpu_off - cpu_on) / cpu_off * 100, 1),
        "stored": stored,
        "query_budget": budget,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"recording-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(
        f"demo: {args.width}x{args.height}, detectors {','.join(detectors)}, {database}, "
        f"{args.rounds} x {args.seconds:g} s per mode\n"
        f"  medians            wall-clock fps   frames per CPU second\n"
        f"  without recording: {fps_off:8.1f}         {cpu_off:8.1f}\n"
        f"  with recording:    {fps_on:8.1f}         {cpu_on:8.1f}\n"
        f"  cost:              {result['cost_percent']:+7.1f} %        {result['cpu_cost_percent']:+7.1f} %"
        f"   (record_frame itself: "
        f"{statistics.median(r['record_frame_us'] for r in runs['on']):.0f} µs/frame)\n"
        f"  stored: {stored['events']} events ({stored['events_with_snapshot']} with snapshots), "
        f"{stored['sessions']} sessions\n"
        f"  queries: {budget['queries']} for {budget['frames']} frames "
        f"({budget['flushes']} flushes) = {budget['queries'] / budget['frames']:.3f} per frame\n"
        f"  written to {path.relative_to(ROOT)}"
    )
    return result


if __name__ == "__main__":
    main()
