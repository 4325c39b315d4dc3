"""Frame pipeline benchmark: what each stage of `cameras.pipeline.FramePipeline` costs a camera,
against a motion-only baseline, in the same run.

    python -m bench.pipeline --seconds 3 --rounds 3

Every variant is a real `FramePipeline` for a camera with the model's defaults (640 px, JPEG 75,
10 fps) and a JPEG encoder thread lent as a capture worker lends it, fed the `demo:` street
scene (a walker, a car, a ball) with two more people walking (`draw_walker`), so HOG has one to
three people to find. Its publisher wants a picture of every frame, so the JPEG encode and both
wire payloads count. Frames carry the timestamps of a 10 fps camera, but are processed as fast
as the machine allows: the figures are the pipeline's ceiling on one camera. Rendering the scene
is not timed, only `process`.

The variants (VARIANTS, the first is the baseline) run for `--seconds` each, interleaved round
after round (motion, untracked, tracked, ..., motion, untracked, ...), so drift on a shared
machine hits them all alike; each keeps its pipeline, and so its motion background and tracks,
from round to round, after an untimed warm-up. Per variant: fps (frames per second of `process`
wall time), p50/p99 ms per frame over all rounds, CPU ms per frame (this process's CPU time, the
encoder thread and OpenCV's threads included), and the cost against the baseline: the median
over rounds of the extra wall (and CPU) time per frame, in % of the baseline's in the same round.

Two more measurements, after the rounds:

- `ObjectTracker.update` alone, for 1, 5 and 20 people walking apart (µs per call, p50/p99);
- bytes per second one viewer receives, over the same 10 s of scene through the tracked
  pipeline: the full stream (every frame, as the seed's JSON FrameData with base64 JPEG and as
  the binary payload) against a grid tile (`cameras.variants`, 320 px at 5 fps).

Events recording is off (EVENTS_RECORDING=0): the recorder has its own benchmark,
`bench/recording.py`. Results are printed and written to bench/results/pipeline-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
SCENE_WIDTH, SCENE_HEIGHT = 640, 480
SCENE_START = 1_763_900_000.0  # a fixed moment, so every run sees the same scene
WARMUP_FRAMES = 30  # motion's background settles and the first tracks are confirmed
TRACKER_OBJECT_COUNTS = (1, 5, 20)
TRACKER_CALLS = 300
BYTES_SCENE_SECONDS = 10.0

# Where the camera's owner drew them, in fractions of the frame: the pavement the people walk
# on, split in two, the road, and a driveway across both.
ZONES = [
    {"name": "Pavement west", "points": [[0, 0.5], [0.5, 0.5], [0.5, 0.76], [0, 0.76]]},
    {"name": "Pavement east", "points": [[0.5, 0.5], [1, 0.5], [1, 0.76], [0.5, 0.76]]},
    {"name": "Road", "points": [[0, 0.76], [1, 0.76], [1, 1], [0, 1]]},
    {
        "name": "Driveway",
        "points": [[0.3, 0.55], [0.7, 0.55], [0.8, 0.8], [0.5, 0.95], [0.2, 0.8]],
    },
]
# What a real owner masks: the on-screen clock and the tree.
MOTION_MASKS = [
    {"name": "Clock", "points": [[0, 0], [0.4, 0], [0.4, 0.06], [0, 0.06]]},
    {"name": "Tree", "points": [[0.74, 0.2], [0.92, 0.2], [0.92, 0.72], [0.74, 0.72]]},
]


@dataclass(frozen=True)
class PipelineVariant:
    """One camera set-up to measure. `around` wraps the variant's rounds: a context manager
    taking its pipeline, for what the camera's configuration cannot express."""

    name: str
    detectors: tuple[str, ...]
    zones: list[dict] = field(default_factory=list)
    motion_masks: list[dict] = field(default_factory=list)
    around: Callable[..., AbstractContextManager[object]] = nullcontext


class _PassThroughTracker:
    """Keeps every detection as it is, with no `track_id`: the pipeline as it was before
    tracking (HOG's one-off false positives included)."""

    def update(self, detections: list[dict], timestamp_ms: int) -> list[dict]:
        return detections


@contextmanager
def tracker_bypassed(pipeline) -> Iterator[None]:
    """Bench only: swaps the pipeline's private tracker for a pass-through while it lasts, to
    measure what tracking costs. A camera's pipeline always tracks."""
    tracker = pipeline._tracker
    pipeline._tracker = _PassThroughTracker()
    try:
        yield
    finally:
        pipeline._tracker = tracker


# The default: what a camera with motion and person detection runs.
TRACKED = PipelineVariant("motion+person tracked", ("motion", "person"))
# Measured in this order every round; the first is the baseline. Something new to weigh (a
# receiver such as clips, switched on by its `around`) is one more entry.
VARIANTS = [
    PipelineVariant("motion", ("motion",)),
    PipelineVariant("motion+person untracked", ("motion", "person"), around=tracker_bypassed),
    TRACKED,
    PipelineVariant("tracked + 4 zones", ("motion", "person"), zones=ZONES),
    PipelineVariant(
        "tracked + 4 zones + 2 masks", ("motion", "person"), zones=ZONES, motion_masks=MOTION_MASKS
    ),
]


class WalkingScene:
    """The demo scene with two more people walking back and forth behind its own walker, each
    at its own pace, so that people appear, cross and overlap."""

    def __init__(self) -> None:
        from cameras.vision.demo import DemoScene, demo_seed

        self._scene = DemoScene(SCENE_WIDTH, SCENE_HEIGHT, seed=demo_seed("bench"))
        self._walker_height = int(SCENE_HEIGHT * 0.3)
        ground = int(SCENE_HEIGHT * 0.72) - self._walker_height + 10
        # (head top, seconds per round trip, phase, shirt colour)
        self._walkers = (
            (ground - 40, 12.0, 0.0, (200, 90, 30)),
            (ground - 70, 17.0, 0.4, (40, 160, 240)),
        )

    def frame_at(self, t: float):
        from cameras.vision.demo import draw_walker

        frame = self._scene.frame_at(t)
        span = SCENE_WIDTH - 2 * self._walker_height // 3
        for head_top, period, phase, shirt in self._walkers:
            x = self._walker_height // 3 + int(
                span * (0.5 - 0.5 * math.cos(2 * math.pi * (t / period + phase)))
            )
            draw_walker(frame, x, head_top, self._walker_height, shirt=shirt, t=t)
        return frame


class _PictureEveryFrame:
    """A publisher that wants every frame's picture and keeps what it was given."""

    def __init__(self, *, keep: bool) -> None:
        self._keep = keep
        self.frames: list = []

    def wants_picture(self) -> bool:
        return True

    def publish(self, frame) -> None:
        if self._keep:
            self.frames.append(frame)


def camera_config(variant: PipelineVariant):
    """A camera with the model's defaults and the variant's detectors, zones and masks."""
    from cameras.models import Camera
    from cameras.selectors import CameraConfig
    from cameras.zones import polygons_of, validate_polygons

    def default(name: str):
        return Camera._meta.get_field(name).default

    validate_polygons(variant.zones)
    validate_polygons(variant.motion_masks)
    return CameraConfig(
        pk=0,
        public_id="bench",
        organization_pk=0,
        source="demo:bench",
        target_fps=default("target_fps"),
        max_width=default("max_width"),
        jpeg_quality=default("jpeg_quality"),
        detectors=variant.detectors,
        min_confidence=default("min_confidence"),
        onnx_model="",
        onnx_labels="",
        zones=polygons_of(variant.zones),
        motion_masks=polygons_of(variant.motion_masks),
    )


class _Running:
    """A variant's pipeline, its scene clock and its tallies, kept across rounds."""

    def __init__(self, variant: PipelineVariant, encoder: ThreadPoolExecutor) -> None:
        from cameras.pipeline import FramePipeline

        self.variant = variant
        self.config = camera_config(variant)
        self.pipeline = FramePipeline(self.config, encoder=encoder)
        self.scene = WalkingScene()
        self.frame_index = 0
        self.frame_ms: list[float] = []
        self.rounds: list[dict] = []
        self.track_ids: set[int] = set()
        self.person_detections = 0
        self.zoned_detections = 0

    def process_next(self, publisher: _PictureEveryFrame) -> tuple[float, float]:
        """Render the next frame (untimed), process it; its wall and CPU seconds."""
        timestamp = SCENE_START + self.frame_index / self.config.target_fps
        self.frame_index += 1
        image = self.scene.frame_at(timestamp)
        cpu_started = time.process_time()
        started = time.perf_counter()
        processed = self.pipeline.process(
            image, timestamp_ms=round(timestamp * 1000), publisher=publisher
        )
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        for detection in processed.detections or ():
            if detection["class"] == "person":
                self.person_detections += 1
            if "track_id" in detection:
                self.track_ids.add(detection["track_id"])
            if detection.get("zones"):
                self.zoned_detections += 1
        return wall, cpu

    def run_round(self, seconds: float) -> dict:
        publisher = _PictureEveryFrame(keep=False)
        wall_total = cpu_total = 0.0
        frames = 0
        deadline = time.perf_counter() + seconds
        with self.variant.around(self.pipeline):
            while time.perf_counter() < deadline:
                wall, cpu = self.process_next(publisher)
                self.frame_ms.append(wall * 1000)
                wall_total += wall
                cpu_total += cpu
                frames += 1
        figures = {
            "frames": frames,
            "fps": frames / wall_total,
            "wall_ms_per_frame": wall_total * 1000 / frames,
            "cpu_ms_per_frame": cpu_total * 1000 / frames,
        }
        self.rounds.append(figures)
        return figures

    def warm_up(self) -> None:
        publisher = _PictureEveryFrame(keep=False)
        with self.variant.around(self.pipeline):
            for _ in range(WARMUP_FRAMES):
                self.process_next(publisher)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _relative_percent(rounds: list[dict], baseline_rounds: list[dict], key: str) -> float:
    # Paired by round: each round's variant against the baseline measured just before it.
    return statistics.median(
        (variant[key] / baseline[key] - 1) * 100
        for variant, baseline in zip(rounds, baseline_rounds, strict=True)
    )


def measure_variants(
    variants: list[PipelineVariant], *, seconds: float, rounds: int
) -> tuple[list[dict], list[float]]:
    """Each variant's figures, and the 1-minute load average as each round began."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-jpeg") as encoder:
        running = [_Running(variant, encoder) for variant in variants]
        for each in running:
            each.warm_up()
        load_per_round = []
        for _ in range(rounds):
            load_per_round.append(os.getloadavg()[0])
            for each in running:
                each.run_round(seconds)
    baseline = running[0]
    results = []
    for each in running:
        results.append(
            {
                "name": each.variant.name,
                "detectors": list(each.variant.detectors),
                "zones": len(each.variant.zones),
                "motion_masks": len(each.variant.motion_masks),
                "frames": len(each.frame_ms),
                "fps": statistics.median(r["fps"] for r in each.rounds),
                "ms_p50": _percentile(each.frame_ms, 0.50),
                "ms_p99": _percentile(each.frame_ms, 0.99),
                "cpu_ms_per_frame": statistics.median(r["cpu_ms_per_frame"] for r in each.rounds),
                "cost_percent": _relative_percent(
                    each.rounds, baseline.rounds, "wall_ms_per_frame"
                ),
                "cpu_cost_percent": _relative_percent(
                    each.rounds, baseline.rounds, "cpu_ms_per_frame"
                ),
                "person_detections": each.person_detections,
                "tracks_seen": len(each.track_ids),
                "detections_in_zones": each.zoned_detections,
                "rounds": each.rounds,
            }
        )
    return results, load_per_round


def _walking_apart(count: int, step: int) -> list[dict]:
    """`count` people on a grid, far enough apart never to compete, each walking right."""
    columns = math.ceil(math.sqrt(count))
    return [
        {
            "class": "person",
            "confidence": 0.9,
            "bbox": [
                40 + 150 * (index % columns) + 6 * step,
                40 + 200 * (index // columns),
                40,
                90,
            ],
        }
        for index in range(count)
    ]


def measure_tracker(counts: tuple[int, ...] = TRACKER_OBJECT_COUNTS, calls: int = TRACKER_CALLS):
    """µs per `ObjectTracker.update` with `count` detections a frame, all matched to tracks."""
    from django.conf import settings

    from cameras.vision.tracking import ObjectTracker

    results = []
    for count in counts:
        tracker = ObjectTracker(
            max_lost_ms=int(settings.TRACK_LOST_SECONDS * 1000), min_hits=settings.TRACK_MIN_HITS
        )
        frames = [_walking_apart(count, step) for step in range(WARMUP_FRAMES + calls)]
        for step in range(WARMUP_FRAMES):
            tracker.update(frames[step], step * 100)
        durations = []
        for step in range(WARMUP_FRAMES, WARMUP_FRAMES + calls):
            started = time.perf_counter()
            tracker.update(frames[step], step * 100)
            durations.append((time.perf_counter() - started) * 1e6)
        results.append(
            {
                "objects": count,
                "calls": calls,
                "tracks": tracker.track_count,
                "us_p50": _percentile(durations, 0.50),
                "us_p99": _percentile(durations, 0.99),
            }
        )
    return results


def measure_viewer_bytes(scene_seconds: float = BYTES_SCENE_SECONDS) -> dict:
    """Bytes per second a viewer receives over the same frames: the full stream, every frame,
    against the grid tile, the newest frame every 1/fps seconds as a `VariantEncoder` takes it."""
    from cameras.variants import DEFAULT_FPS, DEFAULT_WIDTH, Variant, variant_encode

    tile = Variant(width=DEFAULT_WIDTH, fps=DEFAULT_FPS)
    publisher = _PictureEveryFrame(keep=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-jpeg") as encoder:
        running = _Running(TRACKED, encoder)
        for _ in range(round(scene_seconds * running.config.target_fps)):
            running.process_next(publisher)
    full = publisher.frames
    tiles = []
    due_ms = full[0].timestamp
    for frame in full:
        if frame.timestamp >= due_ms:
            tiles.append(variant_encode(frame, tile))
            due_ms += round(tile.interval_seconds * 1000)

    def per_second(frames: list, payload: Callable) -> float:
        return sum(len(payload(frame)) for frame in frames) / scene_seconds

    figures = {
        "scene_seconds": scene_seconds,
        "full": {
            "width": SCENE_WIDTH,
            "fps": running.config.target_fps,
            "frames": len(full),
            "json_bytes_per_second": per_second(full, lambda f: f.text.encode()),
            "binary_bytes_per_second": per_second(full, lambda f: f.binary),
        },
        "tile": {
            "width": tile.width,
            "fps": tile.fps,
            "frames": len(tiles),
            "json_bytes_per_second": per_second(tiles, lambda f: f.text.encode()),
            "binary_bytes_per_second": per_second(tiles, lambda f: f.binary),
        },
    }
    figures["tile_percent_of_full_binary"] = (
        figures["tile"]["binary_bytes_per_second"]
        / figures["full"]["binary_bytes_per_second"]
        * 100
    )
    return figures


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def run(*, seconds: float, rounds: int, bytes_scene_seconds: float = BYTES_SCENE_SECONDS) -> dict:
    """The whole benchmark, in a configured Django; returns the figures."""
    import cv2
    from django.conf import settings

    load_before = os.getloadavg()
    started = time.perf_counter()
    variants, load_per_round = measure_variants(VARIANTS, seconds=seconds, rounds=rounds)
    tracker = measure_tracker()
    viewer_bytes = measure_viewer_bytes(bytes_scene_seconds)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_per_round": load_per_round,
            "load_average_after": os.getloadavg(),
        },
        "scene": (
            f"demo: {SCENE_WIDTH}x{SCENE_HEIGHT} + 2 walkers, timestamps of a 10 fps camera, "
            "processed as fast as possible"
        ),
        "events_recording": settings.EVENTS_RECORDING,
        "seconds": seconds,
        "rounds": rounds,
        "total_seconds": time.perf_counter() - started,
        "variants": variants,
        "tracker": tracker,
        "viewer_bytes": viewer_bytes,
    }


def report(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"{result['scene']}; {result['rounds']} rounds x {result['seconds']:g} s per variant",
        f"machine: {machine['cpus']} cpus, {machine['memory_gib']:.0f} GiB, OpenCV "
        f"{machine['opencv']} ({machine['opencv_threads']} threads); 1-min load average "
        f"{machine['load_average_before'][0]:.2f} before, "
        + ", ".join(f"{load:.2f}" for load in machine["load_average_per_round"])
        + f" as the rounds began, {machine['load_average_after'][0]:.2f} after",
        "",
        f"  {'variant':<30} {'fps':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>7} "
        f"{'cost':>8} {'CPU cost':>9} {'tracks':>6}",
    ]
    for variant in result["variants"]:
        lines.append(
            f"  {variant['name']:<30} {variant['fps']:7.1f} {variant['ms_p50']:7.2f} "
            f"{variant['ms_p99']:7.2f} {variant['cpu_ms_per_frame']:7.2f} "
            f"{variant['cost_percent']:+7.1f}% {variant['cpu_cost_percent']:+8.1f}% "
            f"{variant['tracks_seen']:6d}"
        )
    lines += ["", "  ObjectTracker.update alone"]
    for tracker in result["tracker"]:
        lines.append(
            f"  {tracker['objects']:3d} objects: p50 {tracker['us_p50']:8.1f} µs, "
            f"p99 {tracker['us_p99']:8.1f} µs"
        )
    viewer_bytes = result["viewer_bytes"]
    lines += [
        "",
        f"  bytes per viewer per second, over {viewer_bytes['scene_seconds']:g} s of scene",
    ]
    for name in ("full", "tile"):
        stream = viewer_bytes[name]
        lines.append(
            f"  {name:<4} {stream['width']} px at {stream['fps']} fps: "
            f"JSON {stream['json_bytes_per_second'] / 1024:7.1f} KiB/s, "
            f"binary {stream['binary_bytes_per_second'] / 1024:7.1f} KiB/s"
        )
    lines.append(f"  tile / full (binary): {viewer_bytes['tile_percent_of_full_binary']:.1f} %")
    return "\n".join(lines)


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # No database is touched: the recorder, the one receiver, is off.
    os.environ["EVENTS_RECORDING"] = "0"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="each variant's round length")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all the variants")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 20 or not 0 < args.rounds <= 10:
        parser.error("--seconds must be in (0, 20] and --rounds in 1..10")
    _setup_django()
    result = run(seconds=args.seconds, rounds=args.rounds)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"  written to {path.relative_to(ROOT)} in {result['total_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
