"""One camera's frames as H.264, through PyAV's libx264, ready for `cameras.video.fmp4`.

Tuned for live viewing, not for files: `zerolatency` (no frame is held back for look-ahead or
B-frames, so each frame comes out of `encode` as it goes in), constrained-baseline profile
(every browser decodes it), one thread (a camera's encoder must not take the cores detection
needs), a key frame every `keyframe_interval` frames and whenever one is asked for, and a rate
cap (`max_kbps`, VBV) so a noisy scene cannot take more than its share of a slow link.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

# Loaded with the module, not by the first encoder: loading FFmpeg takes ~50 ms, which the
# first H.264 viewer's frame would otherwise wait for, and every viewer of the camera with it.
import av
import cv2
import numpy as np

_START_CODE = b"\x00\x00\x01"
_NAL_SPS = 7
_NAL_PPS = 8
_NAL_AUD = 9
# Parameter sets travel in the init segment (avcC), access unit delimiters mean nothing in MP4.
_NOT_IN_SAMPLES = {_NAL_SPS, _NAL_PPS, _NAL_AUD}


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    sample: bytes  # the frame's NAL units, each prefixed with its 4-byte big-endian length
    key: bool
    sps: bytes | None  # the parameter sets, on key frames
    pps: bytes | None


def nal_units(annex_b: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes)."""
    units = []
    start = annex_b.find(_START_CODE)
    while start != -1:
        start += len(_START_CODE)
        end = annex_b.find(_START_CODE, start)
        unit = annex_b[start:] if end == -1 else annex_b[start:end]
        # A 4-byte start code leaves its leading zero at the end of the previous unit.
        units.append(unit.rstrip(b"\x00") if end != -1 else unit)
        start = end
    return [unit for unit in units if unit]


def even_size(width: int, height: int) -> tuple[int, int]:
    """4:2:0 halves the chroma both ways: the encoded picture has even sides (an odd last row
    or column is cut)."""
    return width & ~1, height & ~1


class H264Encoder:
    """Encodes BGR frames of one size. Not thread-safe: one caller at a time."""

    def __init__(
        self, *, width: int, height: int, fps: int, max_kbps: int, crf: int, keyframe_interval: int
    ):
        self.width, self.height = even_size(width, height)
        if self.width < 16 or self.height < 16:
            raise ValueError(f"a {width}x{height} frame is too small to encode as H.264")
        context = av.CodecContext.create("libx264", "w")
        context.width = self.width
        context.height = self.height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, fps)
        context.framerate = Fraction(fps, 1)
        context.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "crf": str(crf),
            "g": str(keyframe_interval),
            "forced-idr": "1",
            "x264-params": f"vbv-maxrate={max_kbps}:vbv-bufsize={max_kbps}:threads=1",
        }
        self._context = context
        self._video_frame = av.VideoFrame
        self._key_picture = av.video.frame.PictureType.I
        self._frames = 0

    def encode(self, image: np.ndarray, *, key: bool = False) -> EncodedFrame | None:
        """The frame encoded; a key frame when `key` (or when the interval says so). None in
        the rare case the encoder gives nothing back for a frame (it never holds frames back
        with these settings, so this does not happen in practice)."""
        picture = image[: self.height, : self.width]
        if picture.shape[0] != self.height or picture.shape[1] != self.width:
            raise ValueError(
                f"the encoder takes {self.width}x{self.height} frames, "
                f"not {picture.shape[1]}x{picture.shape[0]}"
            )
        # OpenCV's conversion is several times faster than swscale's for this step.
        planes = cv2.cvtColor(picture, cv2.COLOR_BGR2YUV_I420)
        frame = self._video_frame.from_ndarray(planes, format="yuv420p")
        frame.pts = self._frames
        self._frames += 1
        if key:
            frame.pict_type = self._key_picture
        packets = self._context.encode(frame)
        if not packets:
            return None
        units = nal_units(b"".join(bytes(packet) for packet in packets))
        sps = next((u for u in units if u[0] & 0x1F == _NAL_SPS), None)
        pps = next((u for u in units if u[0] & 0x1F == _NAL_PPS), None)
        sample = b"".join(
            len(unit).to_bytes(4, "big") + unit
            for unit in units
            if unit[0] & 0x1F not in _NOT_IN_SAMPLES
        )
        return EncodedFrame(
            sample=sample, key=any(p.is_keyframe for p in packets), sps=sps, pps=pps
        )

    def close(self) -> None:
        self._context = None
