"""Clips benchmark: frames per second the real capture pipeline sustains on the `demo:` scene with
event clips recorded versus without, in the same run.

    python -m bench.clips --seconds 10 --rounds 2

Each frame goes through the real `cameras.pipeline.FramePipeline.process` of a `demo:` camera
(resize, its detectors, the tracker, JPEG when wanted, the receivers), with a JPEG thread lent as a
capture worker lends one, and the events recorder (its flusher thread writing to a real database)
registered in both modes. With clips, the events app's clip receiver is registered too and the
recorder tells the clip recorder of each tracked event it stores as ended; its worker thread
encodes the clips (PyAV, libx264) while the pipeline runs, so the figure includes their CPU.
Frames are processed as fast as the machine allows on virtual 30 fps time (no pacing), and nobody
watches (the publisher wants no picture): the worst case for clips, which then need every kept
frame encoded for them alone (`--watched` measures the case where a viewer's JPEGs serve).
Modes alternate (off, on, off, on, ...) for `--rounds` rounds of `--seconds` each, so drift hits
both alike; medians are reported, with frames per CPU second next to wall-clock fps.

The database is a fresh SQLite file in a temporary folder unless DATABASE_URL is set (then it must
be an empty, migratable database you own). Clips and snapshots go to a temporary MEDIA_ROOT.
Results are printed and written to bench/results/clips-<time>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.recording import (
    RESULTS_DIR,
    ROOT,
    SCENE_FPS,
    bench_camera,
    configured_recorder,
    setup_django,
)

# The cost clips may have (issue 9 §5): under this share of the pipeline's frames per second.
COST_LIMIT_PERCENT = 15.0


class Publisher:
    def __init__(self, *, watched: bool):
        self.watched = watched

    def wants_picture(self) -> bool:
        return self.watched

    def publish(self, frame) -> None:
        pass


def _run_mode(camera, *, seconds: float, clips: bool, watched: bool, start: float) -> dict:
    """One mode's run: a fresh pipeline, recorder (and clip recorder) over `seconds` of wall
    clock, from scene time `start`."""

    import events.clips
    import events.recording
    from cameras.pipeline import FramePipeline
    from cameras.receivers import (
        frame_receiver_register,
        frame_receiver_unregister,
        frame_receivers,
    )
    from cameras.selectors import CameraConfig
    from cameras.vision.demo import DemoScene, demo_seed
    from events.clips import ClipReceiver, clip_recorder_build

    clip_recorder = clip_recorder_build() if clips else None
    recorder = configured_recorder(clips=clip_recorder)
    # The events app's own receivers, pointed at this run's recorders.
    events.recording._recorder = recorder
    events.clips._clip_recorder = clip_recorder
    for registered in [r for r in frame_receivers() if r.name == "clips"]:
        frame_receiver_unregister(registered)
    if clips:
        frame_receiver_register(ClipReceiver())
    config = CameraConfig.of(camera)
    scene = DemoScene(640, 480, seed=demo_seed("bench"))
    encoder = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    pipeline = FramePipeline(config, encoder=encoder)
    publisher = Publisher(watched=watched)
    frames = 0
    t = start
    cpu_started = time.process_time()  # every thread: the flusher's and the clip worker's too
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        t += 1.0 / SCENE_FPS
        pipeline.process(scene.frame_at(t), timestamp_ms=int(t * 1000), publisher=publisher)
        frames += 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    # Encoded by the worker while the pipeline ran (their CPU is in the figures); the rest are
    # encoded below, after the measurement.
    during = clip_recorder.clips_written if clip_recorder is not None else 0
    # Outside the measured time: the camera stops, the last events close and their clips encode.
    pipeline.camera_stopped()
    recorder.close()
    written = 0
    if clip_recorder is not None:
        clip_recorder.close()
        written = clip_recorder.clips_written
    encoder.shutdown(wait=True)
    return {
        "frames": frames,
        "seconds": round(elapsed, 3),
        "fps": round(frames / elapsed, 2),
        "cpu_seconds": round(cpu, 3),
        "fps_per_cpu_second": round(frames / cpu, 2),
        "clips_written": written,
        "clips_written_while_measured": during,
        "scene_seconds": round(t - start, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each mode's run")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs to run")
    parser.add_argument(
        "--detectors", default="motion,person", help="comma-separated detector names"
    )
    parser.add_argument(
        "--watched", action="store_true", help="a viewer watches: JPEGs are encoded anyway"
    )
    parser.add_argument(
        "--max-event-seconds",
        type=float,
        default=None,
        help="cut events this long (EVENT_MAX_SECONDS): more, shorter clips encoded meanwhile",
    )
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 < args.rounds <= 10:
        parser.error("--seconds must be in (0, 120] and --rounds in 1..10")

    with tempfile.TemporaryDirectory(prefix="sightline-bench-clips-") as work:
        setup_django(Path(work))
        from django.conf import settings
        from django.db import connection

        from events.models import DetectionEvent

        settings.EVENTS_RECORDING = True
        settings.EVENT_CLIPS = True
        if args.max_event_seconds is not None:
            settings.EVENT_MAX_SECONDS = args.max_event_seconds
        detectors = [name.strip() for name in args.detectors.split(",") if name.strip()]
        camera = bench_camera("clips", detectors=detectors)
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        start = time.time()
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                run = _run_mode(
                    camera,
                    seconds=args.seconds,
                    clips=mode == "on",
                    watched=args.watched,
                    start=start,
                )
                runs[mode].append(run)
                start += run["scene_seconds"] + 60  # the next run sees a fresh street
        tracked = DetectionEvent.objects.filter(track_id__isnull=False)
        stored = {
            "tracked_events": tracked.count(),
            "clips": tracked.exclude(clip="").count(),
            "clip_bytes": sum(tracked.values_list("clip_bytes", flat=True)),
        }
        database = connection.vendor

    fps_off = statistics.median(run["fps"] for run in runs["off"])
    fps_on = statistics.median(run["fps"] for run in runs["on"])
    cpu_off = statistics.median(run["fps_per_cpu_second"] for run in runs["off"])
    cpu_on = statistics.median(run["fps_per_cpu_second"] for run in runs["on"])
    cost = (fps_off - fps_on) / fps_off * 100
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "database": database,
        "scene": f"demo: 640x480, virtual {SCENE_FPS:g} fps",
        "detectors": detectors,
        "watched": args.watched,
        "event_max_seconds": settings.EVENT_MAX_SECONDS,
        "runs": runs,
        "fps_without_clips": round(fps_off, 2),
        "fps_with_clips": round(fps_on, 2),
        "cost_percent": round(cost, 1),
        "fps_per_cpu_second_without_clips": round(cpu_off, 2),
        "fps_per_cpu_second_with_clips": round(cpu_on, 2),
        "cpu_cost_percent": round((cpu_off - cpu_on) / cpu_off * 100, 1),
        "cost_limit_percent": COST_LIMIT_PERCENT,
        "within_limit": cost < COST_LIMIT_PERCENT,
        "stored": stored,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"clips-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(
        f"demo: 640x480, detectors {','.join(detectors)}, {database}, "
        f"{'watched' if args.watched else 'nobody watching'}, "
        f"events cut at {settings.EVENT_MAX_SECONDS:g} s, "
        f"{args.rounds} x {args.seconds:g} s per mode\n"
        f"  medians        wall-clock fps   frames per CPU second\n"
        f"  without clips: {fps_off:8.1f}         {cpu_off:8.1f}\n"
        f"  with clips:    {fps_on:8.1f}         {cpu_on:8.1f}\n"
        f"  cost:          {result['cost_percent']:+7.1f} %        "
        f"{result['cpu_cost_percent']:+7.1f} %   (limit {COST_LIMIT_PERCENT:g} % of fps: "
        f"{'within' if result['within_limit'] else 'OVER'})\n"
        f"  stored: {stored['tracked_events']} tracked events (both modes), {stored['clips']} clips, "
        f"{stored['clip_bytes'] / 1e6:.1f} MB; "
        f"{sum(run['clips_written_while_measured'] for run in runs['on'])} clips encoded while "
        f"measured\n"
        f"  written to {path.relative_to(ROOT)}"
    )
    return result


if __name__ == "__main__":
    main()
