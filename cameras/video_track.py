"""A camera's H.264 stream, encoded in its frame pipeline while someone watches it as H.264.

The pipeline (`cameras.pipeline`) asks `wanted()` for every frame it publishes; that reads the
camera's demand from the cache (`cameras.publishing.camera_video_demand`) at most every
`DEMAND_CHECK_SECONDS`. While wanted, `encode()` turns the frame into the next `VideoFragment`
of the stream: one encoder per camera, whatever the number of viewers and processes watching.
When the mark lapses (no H.264 viewer anywhere for `VIDEO_WATCHED_SECONDS`) the encoder is
closed; the next viewer starts a new stream, with a new id, init segment and timeline.

A key frame comes every `VIDEO_KEYFRAME_SECONDS` and as soon as one is asked for: a fan-out that
has no key frame to start a viewer at, or that lost a fragment, asks through the cache.

Frames reach `encode` from one thread at a time for a capture worker, but ingest may process one
camera's frames in several request threads: a lock keeps the encoder to one caller, and a frame
older than the last encoded one is not encoded (a stream cannot go back in time).
"""

from __future__ import annotations

import math
import secrets
import threading
import time

import numpy as np
from django.conf import settings

from cameras.publishing import VideoFragment, camera_video_demand
from cameras.video import fmp4
from cameras.video.h264 import H264Encoder, even_size
from project.metrics import VIDEO_ENCODERS, VIDEO_FRAMES_ENCODED

DEMAND_CHECK_SECONDS = 0.25


class VideoTrack:
    def __init__(self, camera_id: str, *, fps: int):
        self.camera_id = camera_id
        self.fps = max(1, int(fps))
        self._lock = threading.Lock()
        self._encoder: H264Encoder | None = None
        self._stream = ""
        self._sequence = 0
        self._init: bytes | None = None
        self._codec = ""
        self._last_timestamp = -1
        self._wanted = False
        self._checked = -math.inf
        self._keyframe_asked_ms = 0
        self._key_due = False
        self._running = VIDEO_ENCODERS.labels(camera=camera_id)
        self._encoded = VIDEO_FRAMES_ENCODED.labels(camera=camera_id)

    @property
    def running(self) -> bool:
        return self._encoder is not None

    def wanted(self) -> bool:
        """Whether this frame is to be encoded: someone watches the camera as H.264."""
        now = time.monotonic()
        if now - self._checked < DEMAND_CHECK_SECONDS:
            return self._wanted
        self._checked = now
        try:
            watched, keyframe_asked_ms = camera_video_demand(self.camera_id)
        except Exception:
            # The cache is away (the pipeline's other cache writes say so, once): keep doing
            # what we did; a viewer that came meanwhile gets its key frame within a second.
            return self._wanted
        with self._lock:
            if keyframe_asked_ms > self._keyframe_asked_ms:
                self._keyframe_asked_ms = keyframe_asked_ms
                self._key_due = True
            if not watched:
                self._stop()
        self._wanted = watched
        return watched

    def encode(self, image: np.ndarray, timestamp_ms: int) -> VideoFragment | None:
        """The frame as the stream's next fragment; None for a frame older than the last one.
        Raises what the encoder raises (the stream is then restarted at the next frame)."""
        with self._lock:
            if timestamp_ms <= self._last_timestamp:
                return None
            height, width = image.shape[:2]
            if self._encoder is None or even_size(width, height) != (
                self._encoder.width,
                self._encoder.height,
            ):
                self._start(width, height)
            key, self._key_due = self._key_due, False
            try:
                encoded = self._encoder.encode(image, key=key)
            except Exception:
                self._stop()
                raise
            if encoded is None:
                return None
            if encoded.key and encoded.sps and encoded.pps:
                self._init = fmp4.init_segment(
                    sps=encoded.sps,
                    pps=encoded.pps,
                    width=self._encoder.width,
                    height=self._encoder.height,
                )
                self._codec = fmp4.codec_string(encoded.sps)
            if self._init is None:
                return None  # nothing decodes before the stream's first key frame
            self._last_timestamp = timestamp_ms
            self._sequence += 1
            duration = fmp4.TIMESCALE // self.fps
            decode_time = (self._sequence - 1) * duration
            self._encoded.inc()
            return VideoFragment(
                stream=self._stream,
                sequence=self._sequence,
                key=encoded.key,
                media_time=decode_time / fmp4.TIMESCALE,
                codec=self._codec,
                width=self._encoder.width,
                height=self._encoder.height,
                init=self._init if encoded.key else None,
                data=fmp4.media_fragment(
                    sequence=self._sequence,
                    decode_time=decode_time,
                    duration=duration,
                    sample=encoded.sample,
                    key=encoded.key,
                ),
            )

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _start(self, width: int, height: int) -> None:
        """A new stream (call holding the lock): a new encoder, id, timeline and init segment."""
        self._stop()
        self._encoder = H264Encoder(
            width=width,
            height=height,
            fps=self.fps,
            max_kbps=settings.VIDEO_MAX_KBPS,
            crf=settings.VIDEO_CRF,
            keyframe_interval=max(1, round(self.fps * settings.VIDEO_KEYFRAME_SECONDS)),
        )
        self._stream = secrets.token_hex(4)
        self._sequence = 0
        self._init = None
        self._running.set(1)

    def _stop(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None
            self._running.set(0)
