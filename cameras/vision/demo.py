"""The `demo:` camera: a synthetic street scene rendered with numpy and OpenCV.

A fresh install shows live video with real detections and no camera at hand. The background
(sky and ground gradients, buildings, a road, fixed grain so JPEG sizes are those of a real camera)
is drawn once; each frame copies it and draws three moving objects (a walking figure, a car, a
bouncing ball) at positions that are smooth, periodic functions of time, plus a clock. The same
time always gives the same picture, so tests and benchmarks can ask for any moment.
"""

from __future__ import annotations

import math
import time
import zlib

import cv2
import numpy as np

from cameras.vision.pacing import Pacer

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# A car crosses in 4 s, then the road is empty until the next one, 8 s after the last.
_CAR_PERIOD = 8.0
_CAR_CROSSING = 4.0
_VIVID = ((40, 40, 210), (200, 90, 30), (30, 200, 230), (150, 40, 160), (40, 160, 240))


def demo_seed(name: str) -> int:
    """A stable seed for `demo:<name>`, so each named demo camera looks different but constant."""
    return zlib.crc32(name.encode()) if name else 0


class DemoScene:
    """A live synthetic camera. `read()` renders the present moment; `frame_at(t)` any moment.

    Paced like a camera at `fps`: `read()` sleeps until the next frame is due (at most one frame
    interval) and drops the frames a slow caller missed.
    """

    is_live = True

    def __init__(
        self, width: int = 640, height: int = 480, seed: int = 0, *, fps: float = 30.0
    ) -> None:
        if width < 64 or height < 48:
            raise ValueError("the demo scene needs at least 64x48 pixels")
        self.width = width
        self.height = height
        self.description = f"demo scene {width}x{height} (seed {seed})"
        rng = np.random.default_rng(seed)
        self._background = _render_background(width, height, rng)
        self._phase = float(rng.uniform(0, 100))
        # Saturated colours, so the objects stand out from the grey road and green grass.
        self._car_offset = int(rng.integers(len(_VIVID)))
        self._shirt_color = _VIVID[int(rng.integers(len(_VIVID)))]
        self._pacer = Pacer(fps)
        self._horizon = int(height * 0.45)
        self._road_top = int(height * 0.72)

    def read(self) -> np.ndarray:
        self._pacer.wait()
        return self.frame_at(time.time())

    def close(self) -> None:
        """Nothing to release; present so the scene is a FrameSource."""

    def frame_at(self, t: float) -> np.ndarray:
        """The frame at Unix time `t` (seconds): a new array the caller may keep."""
        frame = self._background.copy()
        scene_t = t + self._phase
        self._draw_person(frame, scene_t)
        self._draw_car(frame, scene_t)
        self._draw_ball(frame, scene_t)
        self._draw_clock(frame, t)
        return frame

    # The object boxes are public so tests can check what a detector found against the truth.
    def person_box(self, t: float) -> tuple[int, int, int, int]:
        x, y, w, h = self._person_geometry(t + self._phase)
        return x - w // 2, y, w, h

    def car_box(self, t: float) -> tuple[int, int, int, int]:
        x, y, w, h = self._car_geometry(t + self._phase)
        return x, y, w, h

    def ball_box(self, t: float) -> tuple[int, int, int, int]:
        x, y, r = self._ball_geometry(t + self._phase)
        return x - r, y - r, 2 * r + 1, 2 * r + 1

    def _person_geometry(self, t: float) -> tuple[int, int, int, int]:
        # Walks back and forth along the pavement, 14 s a round trip, smoothly turning at the ends.
        h = int(self.height * 0.30)
        w = max(8, h // 3)
        span = self.width - 2 * w
        x = w + int(span * (0.5 - 0.5 * math.cos(2 * math.pi * t / 14.0)))
        y = self._road_top - h + int(self.height * 0.02)
        return x, y, w, h

    def _car_geometry(self, t: float) -> tuple[int, int, int, int]:
        # Drives left to right across the road, entering and leaving off screen.
        w = int(self.width * 0.22)
        h = int(self.height * 0.10)
        travel = self.width + w
        x = int(min(1.0, (t % _CAR_PERIOD) / _CAR_CROSSING) * travel) - w
        y = self._road_top + int(self.height * 0.08)
        return x, y, w, h

    def _ball_geometry(self, t: float) -> tuple[int, int, int]:
        r = max(4, self.height // 28)
        swing = 0.5 - 0.5 * math.cos(2 * math.pi * t / 9.0)
        x = int(self.width * (0.15 + 0.7 * swing))
        bounce = abs(math.sin(math.pi * t / 1.1))
        y = int(self._road_top - r - bounce * self.height * 0.25)
        return x, y, r

    def _draw_person(self, frame: np.ndarray, t: float) -> None:
        x, y, w, h = self._person_geometry(t)
        draw_walker(frame, x, y, h, shirt=self._shirt_color, t=t)

    def _draw_car(self, frame: np.ndarray, t: float) -> None:
        x, y, w, h = self._car_geometry(t)
        # Each pass is another car: a background model would learn one colour crossing the same
        # pixels every few seconds as part of the road.
        color = _VIVID[(int(t // _CAR_PERIOD) + self._car_offset) % len(_VIVID)]
        cv2.rectangle(frame, (x, y + h // 3), (x + w, y + h), color, -1)
        cv2.rectangle(frame, (x + w // 5, y), (x + (w * 7) // 10, y + h // 3), color, -1)
        cv2.rectangle(
            frame, (x + w // 4, y + 2), (x + (w * 13) // 20, y + h // 3), (200, 180, 150), -1
        )
        wheel = max(3, h // 4)
        for wheel_x in (x + w // 5, x + (w * 4) // 5):
            cv2.circle(frame, (wheel_x, y + h), wheel, (25, 25, 25), -1, cv2.LINE_AA)

    def _draw_ball(self, frame: np.ndarray, t: float) -> None:
        x, y, r = self._ball_geometry(t)
        cv2.circle(frame, (x, y), r, (30, 120, 240), -1, cv2.LINE_AA)
        cv2.circle(
            frame, (x - r // 3, y - r // 3), max(1, r // 4), (170, 210, 255), -1, cv2.LINE_AA
        )

    def _draw_clock(self, frame: np.ndarray, t: float) -> None:
        # Whole seconds only, small, in a corner: a camera's on-screen clock, which changes too
        # little to read as motion.
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
        scale = self.width / 1280
        cv2.putText(
            frame, text, (6, int(22 * scale) + 6), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA
        )


def draw_walker(
    frame: np.ndarray, x: int, y: int, h: int, *, shirt: tuple[int, int, int], t: float
) -> None:
    """A walking figure `h` pixels tall whose head top is at (x, y), its legs and arms at the
    stride of time `t`: the demo's person, which OpenCV's HOG people detector takes for one
    (tests draw several to make scenes of their own)."""
    w = max(8, h // 3)
    head = max(3, h // 9)
    skin = (140, 170, 210)
    cv2.circle(frame, (x, y + head), head, skin, -1, cv2.LINE_AA)
    torso_top = y + 2 * head
    torso_bottom = y + int(h * 0.58)
    cv2.rectangle(frame, (x - w // 3, torso_top), (x + w // 3, torso_bottom), shirt, -1)
    # Legs and arms swing with the stride.
    stride = math.sin(2 * math.pi * t * 1.4) * w * 0.45
    thickness = max(2, w // 6)
    hip = (x, torso_bottom)
    for sign in (-1, 1):
        foot = (int(x + sign * stride), y + h)
        cv2.line(frame, hip, foot, (60, 50, 40), thickness, cv2.LINE_AA)
        hand = (int(x - sign * stride * 0.8), int(y + h * 0.55))
        cv2.line(frame, (x, torso_top + head // 2), hand, skin, max(2, thickness - 1), cv2.LINE_AA)


def _render_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    horizon = int(height * 0.45)
    road_top = int(height * 0.72)
    background = np.empty((height, width, 3), dtype=np.uint8)
    # Sky: light blue fading to pale near the horizon; ground: green-grey fading darker.
    sky = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    background[:horizon] = (
        (1 - sky) * np.array([200, 150, 90], np.float32)
        + sky * np.array([235, 225, 210], np.float32)
    )[:, None, :].astype(np.uint8)
    ground = np.linspace(0.0, 1.0, height - horizon, dtype=np.float32)[:, None]
    background[horizon:] = (
        (1 - ground) * np.array([120, 150, 130], np.float32)
        + ground * np.array([70, 90, 80], np.float32)
    )[:, None, :].astype(np.uint8)
    # Buildings on the horizon, with windows.
    x = 0
    while x < width:
        building_w = int(rng.integers(width // 12, width // 5))
        building_h = int(rng.integers(height // 8, int(height * 0.35)))
        shade = int(rng.integers(70, 160))
        color = (shade, shade + int(rng.integers(-20, 20)), shade + int(rng.integers(0, 40)))
        top = horizon - building_h
        cv2.rectangle(background, (x, top), (x + building_w, horizon), color, -1)
        step = max(6, building_w // 6)
        for window_y in range(top + step // 2, horizon - step, step):
            for window_x in range(x + step // 2, x + building_w - step // 2, step):
                lit = (210, 230, 240) if rng.random() < 0.3 else (60, 60, 70)
                cv2.rectangle(
                    background,
                    (window_x, window_y),
                    (window_x + step // 3, window_y + step // 2),
                    lit,
                    -1,
                )
        x += building_w + int(rng.integers(0, width // 20))
    # Road with a dashed centre line.
    cv2.rectangle(background, (0, road_top), (width, height), (75, 75, 80), -1)
    dash_y = road_top + (height - road_top) // 2
    for dash_x in range(0, width, width // 10):
        cv2.rectangle(
            background, (dash_x, dash_y), (dash_x + width // 20, dash_y + 3), (200, 220, 230), -1
        )
    # A tree and a bench for shapes that do not move.
    trunk_x = int(width * 0.82)
    cv2.rectangle(
        background,
        (trunk_x, horizon - height // 12),
        (trunk_x + width // 60, road_top),
        (40, 60, 90),
        -1,
    )
    cv2.circle(
        background,
        (trunk_x + width // 120, horizon - height // 10),
        height // 10,
        (50, 110, 60),
        -1,
    )
    # Fixed sensor grain: a real camera's texture, so JPEGs are as large as a real camera's.
    grain = rng.normal(0.0, 5.0, size=(height, width, 1)).astype(np.int16)
    return np.clip(background.astype(np.int16) + grain, 0, 255).astype(np.uint8)
