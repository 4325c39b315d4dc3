"""Frame receivers: who gets each processed frame once the pipeline has published it.

`cameras` knows nothing of what is done with its frames afterwards: apps that build on it
(events' recorder; later clips and notifications) register a receiver from their
`AppConfig.ready()` with `frame_receiver_register`, and `cameras.pipeline` hands every
processed frame to each of them, and tells them when a camera stops.

Receivers run in the thread that processed the frame: a capture worker's own thread, or the
request thread of frame ingest. They must return quickly (keep state in memory, write from
a thread of their own, as the recorder does) and may be called from several threads at once.
A receiver that raises is contained by the pipeline: logged once, counted, never fatal.

A receiver that needs the frame's JPEG even when nobody watches (events' clips) may also have
`wants_picture(camera, timestamp_ms) -> bool`, asked before encoding: the pipeline then encodes
the frame once, for the publisher and the receivers alike, and still publishes only what its
publisher wanted. Receivers without the method never cause an encoding.

This module stays free of OpenCV so that registering from `ready()` keeps startup light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cameras.selectors import CameraConfig

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class ProcessedFrame:
    """One frame as the pipeline left it, shared by every receiver (none may modify it)."""

    camera: CameraConfig  # pk, public_id and organization_pk name the camera
    timestamp_ms: int  # the capture timestamp, as in FrameData
    width: int
    height: int
    # None when detection did not run (a camera without detectors); [] when it found nothing.
    detections: list[dict] | None
    # The JPEG as published (or as encoded for a receiver that wanted it); None when this frame
    # was not encoded (nobody watched and the camera's latest frame was fresh, or a publish was
    # still in flight, and no receiver asked for it).
    jpeg: bytes | None
    # The decoded, resized BGR frame the detections refer to (not a copy: keep a copy of
    # what must outlive the call).
    image: np.ndarray


class FrameReceiver(Protocol):
    # Names the receiver in logs and in the `stage` label of sightline_capture_errors.
    name: str

    def frame_processed(self, frame: ProcessedFrame) -> None: ...

    def camera_stopped(self, camera: CameraConfig) -> None: ...


# A tuple replaced on every change: the pipeline reads it once per frame, without a lock.
_receivers: tuple[FrameReceiver, ...] = ()


def frame_receiver_register(receiver: FrameReceiver) -> None:
    """Hand every processed frame to `receiver` from now on; one of the same name is replaced."""
    global _receivers
    _receivers = (*(r for r in _receivers if r.name != receiver.name), receiver)


def frame_receiver_unregister(receiver: FrameReceiver) -> None:
    global _receivers
    _receivers = tuple(r for r in _receivers if r is not receiver)


def frame_receivers() -> tuple[FrameReceiver, ...]:
    return _receivers
