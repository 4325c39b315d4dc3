"""The way of a frame: the one path every new frame takes, whoever produced it.

Capture workers (`cameras.capture`: a thread per camera reading its source) and frame ingest
(`cameras.ingest`: frames pushed over HTTP) hand each new picture to their camera's
`FramePipeline.process`, which takes it, top to bottom:

1. resize, once, to the camera's `max_width` (no copy when it fits);
2. detect: the camera's detectors on that very frame, so boxes never drift from the picture;
   then track: each object's detection gets the `track_id` it has had since it came into view
   (`cameras.vision.tracking`), and on a camera with zones the `zones` its box stands in
   (`cameras.zones`), before anything is sent;
3. encode JPEG once, beside detection when the producer lends a thread for it, and only when
   its publisher or a receiver (events' clips) wants a picture of this frame (ingest's sent
   bytes serve when they fit);
   and, while someone watches the camera as H.264, encode the frame once more, as the next
   fragment of the camera's H.264 stream (`cameras.video_track`), beside the JPEG when the
   producer lends two threads; a failed H.264 encode is contained (logged once) and the frame
   goes on without it;
4. build the seed's FrameData once: both wire payloads (`cameras.publishing.PublishedFrame`),
   with the H.264 fragment beside them;
5. publish once, to the camera's group, through the producer's publisher; fan-out to the
   viewers is `cameras.fanout`'s, per camera and never per viewer;
6. hand the `ProcessedFrame` to the registered receivers (`cameras.receivers`: events'
   recorder), each contained: one that raises is logged once, counted, and the frame goes on.

What differs between the producers stays with them, behind the `Publisher` they pass in: where
a picture goes and what a failure costs (a capture worker sends it onto the event loop and
skips frames while one is in flight; ingest awaits it and answers failures), and how they report
the camera's status (at most once a second, either way).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Protocol

import numpy as np
from django.conf import settings

from cameras.publishing import PublishedFrame, VideoFragment
from cameras.receivers import FrameReceiver, ProcessedFrame, frame_receivers
from cameras.selectors import CameraConfig
from cameras.video_track import VideoTrack
from cameras.vision.detectors import build_detectors, run_detectors
from cameras.vision.frames import encode_jpeg, resize_to_width
from cameras.vision.tracking import ObjectTracker
from cameras.zones import zones_containing
from project.contained import ContainedFailures
from project.metrics import CAPTURE_ERRORS

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    def wants_picture(self) -> bool:
        """Whether this frame is to be encoded and published (asked before encoding)."""
        ...

    def publish(self, frame: PublishedFrame) -> None: ...


class FramePipeline:
    """One camera's frame path: its detectors (they keep state, motion's background) and the
    failures of its receivers. Build it once per camera and configuration; raises
    `DetectorConfigError` when the detectors cannot be built."""

    def __init__(self, config: CameraConfig, *, encoder: Executor | None = None):
        self.config = config
        self._detectors = build_detectors(
            list(config.detectors),
            min_confidence=config.min_confidence,
            onnx_model=config.onnx_model or None,
            onnx_labels=config.onnx_labels or None,
            motion_masks=config.motion_masks,
        )
        self._tracker = ObjectTracker(
            max_lost_ms=int(settings.TRACK_LOST_SECONDS * 1000),
            min_hits=settings.TRACK_MIN_HITS,
        )
        # Detectors and the tracker are not thread-safe, and ingest may process one camera in
        # several request threads at once; a capture worker never waits on it.
        self._detecting = threading.Lock()
        self._encoder = encoder
        self._video = VideoTrack(config.public_id, fps=config.target_fps)
        self._video_failures = ContainedFailures(
            what=f"H.264 encoding for camera {config.public_id}",
            count=CAPTURE_ERRORS.labels(camera=config.public_id, stage="video").inc,
            logger=logger,
        )
        self._receiver_failures: dict[str, ContainedFailures] = {}

    def process(
        self,
        image: np.ndarray,
        *,
        timestamp_ms: int,
        publisher: Publisher,
        jpeg: bytes | None = None,
    ) -> ProcessedFrame:
        """Take one new frame its whole way (see the module's docstring). `jpeg`: the bytes
        `image` was decoded from, published as they are if no resize changes the picture.

        Raises what detection, encoding or the publisher raise; never what a receiver raises."""
        config = self.config
        # Read once: the receivers asked about this frame are the ones that get it.
        receivers = frame_receivers()
        # 1. Resize once.
        frame = resize_to_width(image, config.max_width)
        # 2. Detect, while 3. the JPEG is encoded once beside it (if a picture is wanted).
        publish = publisher.wants_picture()
        picture = self._picture_start(
            frame,
            sent=jpeg if frame is image else None,
            wanted=publish or self._receivers_want_picture(receivers, timestamp_ms),
        )
        video = self._video_start(frame, timestamp_ms) if publish and self._video.wanted() else None
        detections = self._detect(frame, timestamp_ms)
        jpeg = picture()
        # 4. FrameData once, 5. published once.
        if jpeg is not None and publish:
            publisher.publish(
                PublishedFrame.build(
                    camera_id=config.public_id,
                    jpeg=jpeg,
                    timestamp=timestamp_ms,
                    detections=detections,
                    video=None if video is None else video(),
                )
            )
        # 6. The receivers.
        height, width = frame.shape[:2]
        processed = ProcessedFrame(
            camera=config,
            timestamp_ms=timestamp_ms,
            width=width,
            height=height,
            detections=detections,
            jpeg=jpeg,
            image=frame,
        )
        for receiver in receivers:
            with self._failures_of(receiver):
                receiver.frame_processed(processed)
        return processed

    def _receivers_want_picture(
        self, receivers: tuple[FrameReceiver, ...], timestamp_ms: int
    ) -> bool:
        """Whether a receiver wants this frame's JPEG (the optional `wants_picture`, see
        cameras.receivers); one that raises is contained and wants nothing."""
        for receiver in receivers:
            wants_picture = getattr(receiver, "wants_picture", None)
            if wants_picture is None:
                continue
            with self._failures_of(receiver):
                if wants_picture(self.config, timestamp_ms):
                    return True
        return False

    def camera_stopped(self) -> None:
        """Tell the receivers that this camera stopped (its worker ended)."""
        self._video.close()
        for receiver in frame_receivers():
            with self._failures_of(receiver):
                receiver.camera_stopped(self.config)

    def _picture_start(
        self, frame: np.ndarray, *, sent: bytes | None, wanted: bool
    ) -> Callable[[], bytes | None]:
        """What will give the frame's JPEG once detection is done: nothing when no picture is
        wanted; the sent bytes when they are the picture (re-encoding would only cost time and
        quality); else the frame encoded, in the encoder's thread if the producer lent one."""
        if not wanted:
            return lambda: None
        if sent is not None:
            return lambda: sent
        if self._encoder is None:
            return partial(encode_jpeg, frame, self.config.jpeg_quality)
        # Encoding and detection both run in OpenCV without the GIL: side by side, the frame
        # is ready as soon as the slower of the two is done.
        return self._encoder.submit(encode_jpeg, frame, self.config.jpeg_quality).result

    def _video_start(
        self, frame: np.ndarray, timestamp_ms: int
    ) -> Callable[[], VideoFragment | None]:
        """What will give the frame's H.264 fragment: encoded in the producer's encoder threads
        (beside the JPEG when it lent two) or, for ingest, when asked. One at a time: the next
        frame's comes only after this one's is taken."""
        if self._encoder is None:
            return partial(self._video_encode, frame, timestamp_ms)
        return self._encoder.submit(self._video_encode, frame, timestamp_ms).result

    def _video_encode(self, frame: np.ndarray, timestamp_ms: int) -> VideoFragment | None:
        with self._video_failures:
            return self._video.encode(frame, timestamp_ms)
        return None  # contained: told once, the viewers wait for the restarted stream's key

    def _detect(self, frame: np.ndarray, timestamp_ms: int) -> list[dict] | None:
        if not self._detectors:
            return None
        with self._detecting:
            detections = [
                detection.as_dict() for detection in run_detectors(self._detectors, frame)
            ]
            detections = self._tracker.update(detections, timestamp_ms)
        if self.config.zones:
            frame_size = (frame.shape[1], frame.shape[0])
            for detection in detections:
                if "track_id" in detection:
                    detection["zones"] = zones_containing(
                        self.config.zones, detection["bbox"], frame_size
                    )
        return detections

    def _failures_of(self, receiver: FrameReceiver) -> ContainedFailures:
        failures = self._receiver_failures.get(receiver.name)
        if failures is None:
            camera = self.config.public_id
            failures = self._receiver_failures.setdefault(
                receiver.name,
                ContainedFailures(
                    what=f"The frame receiver {receiver.name!r} for camera {camera}",
                    count=CAPTURE_ERRORS.labels(camera=camera, stage=receiver.name).inc,
                    logger=logger,
                ),
            )
        return failures
