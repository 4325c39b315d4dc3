"""Clips of events, without Django: a camera's ring of recent JPEG frames, and their encoding
into one short H.264 MP4.

The ring keeps each frame's JPEG as the pipeline encoded it (publisher and clips share the one
encoding), bounded both by seconds and by bytes, so a busy high-resolution camera cannot grow
it without end. When an event ends, the frames between its start minus the pre-roll and its end
plus the post-roll are copied out (references to the immutable bytes, not the pictures) and
encoded once, in a worker thread, by `clip_encode`.

The MP4 is made for progressive playback in a browser: H.264 in yuv420p (what every browser
decodes), no B-frames (each frame decodes as it arrives), and `+faststart` (the index before the
data, so playing starts before the whole file has arrived).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RingFrame:
    timestamp_ms: int
    jpeg: bytes
    width: int
    height: int


class FrameRing:
    """A camera's latest frames, oldest first, at most `max_seconds` of them and `max_bytes` of
    JPEG. Not thread-safe: its owner holds a lock around it."""

    def __init__(self, *, max_seconds: float, max_bytes: int) -> None:
        self.max_ms = int(max_seconds * 1000)
        self.max_bytes = max_bytes
        self._frames: deque[RingFrame] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def newest_ms(self) -> int | None:
        return self._frames[-1].timestamp_ms if self._frames else None

    @property
    def oldest_ms(self) -> int | None:
        return self._frames[0].timestamp_ms if self._frames else None

    def append(self, frame: RingFrame) -> None:
        frames = self._frames
        if frames and (
            frame.timestamp_ms <= frames[-1].timestamp_ms
            or (frame.width, frame.height) != (frames[-1].width, frames[-1].height)
        ):
            # A clock that went back, or a camera whose size changed (a new max_width): one
            # clip cannot hold both, so the older frames go.
            self.clear()
        frames.append(frame)
        self.bytes += len(frame.jpeg)
        while frames and (
            self.bytes > self.max_bytes or frame.timestamp_ms - frames[0].timestamp_ms > self.max_ms
        ):
            self.bytes -= len(frames.popleft().jpeg)

    def keep_last(self, milliseconds: int) -> None:
        """Drop the frames more than `milliseconds` older than the newest."""
        frames = self._frames
        while frames and frames[-1].timestamp_ms - frames[0].timestamp_ms > milliseconds:
            self.bytes -= len(frames.popleft().jpeg)

    def clear(self) -> None:
        self._frames.clear()
        self.bytes = 0

    def between(self, start_ms: int, end_ms: int) -> list[RingFrame]:
        """The frames taken from `start_ms` to `end_ms`, both included, oldest first."""
        return [frame for frame in self._frames if start_ms <= frame.timestamp_ms <= end_ms]


@dataclass(frozen=True)
class EncodedClip:
    started_ms: int  # the capture time of its first frame
    duration_ms: int
    size: int  # bytes


def clip_encode(
    frames: Iterable[RingFrame], path: Path, *, fps: float, crf: int = 26
) -> EncodedClip:
    """Encode the frames (oldest first, one size) into an MP4 at `path`, written atomically: a
    temporary file beside it is renamed over it once complete, so a reader never sees half a clip.

    Each frame is shown from its capture time until the next one's (the last for the clip's
    mean frame interval), so the clip's timing is the camera's, dropped frames included. `fps`
    only times a clip of one frame. Raises ValueError for no frames."""
    # Imported here, in the encoding thread: registering the clip receiver at start-up (and
    # every management command) need not load FFmpeg and OpenCV.
    import av
    import cv2
    import numpy as np

    frames = list(frames)
    if not frames:
        raise ValueError("a clip needs at least one frame")
    first_ms = frames[0].timestamp_ms
    # The last frame lasts as long as the clip's frames did on average: a camera slower than
    # `fps` (detection-bound, say 5 fps) would otherwise have its clip cut short by half a frame.
    span_ms = frames[-1].timestamp_ms - first_ms
    frame_ms = max(1, round(span_ms / (len(frames) - 1) if len(frames) > 1 else 1000 / fps))
    # yuv420p halves the chroma both ways: the picture must have even sides.
    width, height = frames[0].width & ~1, frames[0].height & ~1
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with av.open(
            str(temporary), mode="w", format="mp4", options={"movflags": "+faststart"}
        ) as container:
            # The nominal rate: libx264's rate control and the muxer's last sample duration.
            stream = container.add_stream("libx264", rate=Fraction(1000, frame_ms))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
            # bf=0: no B-frames, so a browser shows each frame as it arrives; veryfast: a clip
            # of a minute encodes in a few seconds of one core.
            stream.options = {"preset": "veryfast", "crf": str(crf), "bf": "0"}
            for frame in frames:
                image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    continue  # a JPEG the camera sent broken: the previous frame stays longer
                picture = av.VideoFrame.from_ndarray(image[:height, :width], format="bgr24")
                picture = picture.reformat(format="yuv420p")
                picture.pts = frame.timestamp_ms - first_ms
                picture.time_base = Fraction(1, 1000)
                container.mux(stream.encode(picture))
            container.mux(stream.encode(None))
            last_ms = frames[-1].timestamp_ms - first_ms
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return EncodedClip(
        started_ms=first_ms, duration_ms=last_ms + frame_ms, size=path.stat().st_size
    )
