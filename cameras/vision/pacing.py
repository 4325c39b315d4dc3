"""Pacing for sources that could produce frames faster than real time (demo scene, video files).

They behave like a camera: `read()` waits for the next frame's moment, and a caller that falls
behind gets the present frame, not a backlog.
"""

from __future__ import annotations

import time


class Pacer:
    """Spaces calls to `wait()` at least 1/fps apart; a late call returns at once."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.interval = 1.0 / fps
        self._next_due = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self._next_due:
            time.sleep(self._next_due - now)
        else:
            # Late (or first call): this frame is due now; the ones missed are gone, as on a camera.
            self._next_due = now
        self._next_due += self.interval
