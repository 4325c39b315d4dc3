"""The H.264 encoder and fragmented-MP4 writer on real frames, read back by FFmpeg's demuxer;
and the feed's per-viewer policy (a slow viewer skips whole groups of pictures)."""

from __future__ import annotations

import dataclasses
import io
import struct
import time

import av
import numpy as np
import pytest

from cameras.publishing import PublishedFrame, VideoFragment
from cameras.video import fmp4
from cameras.video.h264 import H264Encoder, nal_units
from cameras.video_fanout import BEHIND_SECONDS, VideoFeed, VideoViewer
from cameras.vision.demo import DemoScene
from tests.cameras.conftest import jpeg_bytes


def _frames(count: int, width: int = 320, height: int = 240) -> list[np.ndarray]:
    scene = DemoScene(max(64, width), max(48, height), seed=5)
    start = time.time()
    return [scene.frame_at(start + i / 10)[:height, :width] for i in range(count)]


def _stream(frames, *, keys=(), fps=10) -> tuple[bytes, list[bool]]:
    height, width = frames[0].shape[:2]
    encoder = H264Encoder(
        width=width, height=height, fps=fps, max_kbps=1000, crf=25, keyframe_interval=fps
    )
    init, out, key_flags = None, [], []
    for number, image in enumerate(frames, start=1):
        encoded = encoder.encode(image, key=number - 1 in keys)
        if init is None:
            init = fmp4.init_segment(
                sps=encoded.sps, pps=encoded.pps, width=encoder.width, height=encoder.height
            )
        key_flags.append(encoded.key)
        out.append(
            fmp4.media_fragment(
                sequence=number,
                decode_time=(number - 1) * (fmp4.TIMESCALE // fps),
                duration=fmp4.TIMESCALE // fps,
                sample=encoded.sample,
                key=encoded.key,
            )
        )
    return init + b"".join(out), key_flags


def _decode(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), format="mp4") as container:
        return list(container.decode(video=0))


def test_every_frame_decodes_at_its_media_time_and_looks_like_its_source():
    frames = _frames(25)
    data, keys = _stream(frames)
    decoded = _decode(data)
    assert len(decoded) == 25
    assert [round(float(frame.time), 3) for frame in decoded] == [i / 10 for i in range(25)]
    for source, frame in zip(frames, decoded, strict=True):
        picture = frame.to_ndarray(format="bgr24").astype(int)
        assert np.abs(picture - source.astype(int)).mean() < 8  # the same picture, compressed
    assert keys[0] and keys[10] and keys[20]  # a key frame every fps frames
    assert sum(keys) == 3


def test_a_key_frame_comes_when_asked_for():
    _, keys = _stream(_frames(8), keys={4})
    assert keys == [True, False, False, False, True, False, False, False]


def test_odd_sized_frames_are_cut_to_even_sides():
    decoded = _decode(_stream(_frames(3, width=321, height=241))[0])
    assert (decoded[0].width, decoded[0].height) == (320, 240)


def test_a_frame_of_another_size_is_refused_with_both_sizes():
    encoder = H264Encoder(width=320, height=240, fps=10, max_kbps=500, crf=25, keyframe_interval=10)
    with pytest.raises(ValueError, match="320x240 frames, not 160x120"):
        encoder.encode(np.zeros((120, 160, 3), np.uint8))


def test_the_codec_string_is_the_sps_profile_and_level():
    data, _ = _stream(_frames(1))
    sps = bytes.fromhex("6742c01eda0280f6")
    assert fmp4.codec_string(sps) == "avc1.42c01e"
    assert b"avcC" in data and b"avc1" in data


def test_nal_units_split_on_three_and_four_byte_start_codes():
    stream = b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88\x80"
    assert nal_units(stream) == [b"\x67\x42", b"\x68\xce", b"\x65\x88\x80"]


def test_the_fragment_boxes_say_where_the_sample_is():
    fragment = fmp4.media_fragment(
        sequence=7, decode_time=90_000, duration=9000, sample=b"\x00\x00\x00\x02\x65\x88", key=True
    )
    moof_size, moof = struct.unpack(">I4s", fragment[:8])
    assert moof == b"moof"
    mdat_size, mdat = struct.unpack(">I4s", fragment[moof_size : moof_size + 8])
    assert mdat == b"mdat" and fragment[moof_size + 8 :] == b"\x00\x00\x00\x02\x65\x88"
    data_offset = struct.unpack(
        ">i", fragment[fragment.index(b"trun") + 12 : fragment.index(b"trun") + 16]
    )
    assert data_offset == (moof_size + 8,)


# --- the feed's policy, per viewer --------------------------------------------------------


class _Connection:
    """A viewer's socket as the feed sees it: what was written, and what is still unsent."""

    def __init__(self):
        self.written: list[bytes] = []
        self.unsent = 0

    def write(self, framed: bytes) -> bool:
        self.written.append(framed)
        return True


def _frame(sequence: int, *, key: bool, stream: str = "s1") -> PublishedFrame:
    video = VideoFragment(
        stream=stream,
        sequence=sequence,
        key=key,
        media_time=(sequence - 1) / 10,
        codec="avc1.42c01e",
        width=320,
        height=240,
        init=b"init-" + stream.encode() if key else None,
        data=f"fragment-{stream}-{sequence}".encode(),
    )
    frame = PublishedFrame.build(
        camera_id="cam", jpeg=jpeg_bytes(), timestamp=1000 + sequence, detections=[]
    )
    return dataclasses.replace(frame, video=video)


def _written(connection: _Connection) -> list[str]:
    texts = []
    for framed in connection.written:
        payload = framed[4:] if framed[1] == 126 else framed[2:]  # the messages here are short
        if framed[1] == 127:
            payload = framed[10:]
        (length,) = struct.unpack_from(">I", payload)
        texts.append(payload[4 + length :].decode())
    return texts


async def _viewer(connection: _Connection) -> VideoViewer:
    async def unused(payload: bytes) -> None:
        raise AssertionError("the framed writer is used")

    return VideoViewer(
        send_bytes=unused, pending_bytes=lambda: connection.unsent, write_framed=connection.write
    )


async def test_a_slow_viewer_skips_to_the_next_key_frame_once_drained(settings):
    settings.VIDEO_MAX_KBPS = 100
    feed = VideoFeed("cam")
    slow, fast = _Connection(), _Connection()
    for connection in (slow, fast):
        feed.add(await _viewer(connection))
    feed.deliver(_frame(1, key=True))
    feed.deliver(_frame(2, key=False))
    slow.unsent = int(BEHIND_SECONDS * 100_000 / 8) + 1  # more than 2 s at the cap
    feed.deliver(_frame(3, key=False))
    feed.deliver(_frame(4, key=True))  # still behind: skipped as well
    slow.unsent = 0
    feed.deliver(_frame(5, key=False))  # drained, but mid-group: cannot start here
    feed.deliver(_frame(6, key=True))
    feed.deliver(_frame(7, key=False))
    assert _written(fast) == ["init-s1"] + [f"fragment-s1-{n}" for n in range(1, 8)]
    assert _written(slow) == [
        "init-s1",
        "fragment-s1-1",
        "fragment-s1-2",
        "fragment-s1-6",
        "fragment-s1-7",
    ]
    await feed.stop()


async def test_a_new_stream_sends_its_init_segment_first(settings):
    feed = VideoFeed("cam")
    connection = _Connection()
    feed.add(await _viewer(connection))
    feed.deliver(_frame(1, key=True))
    # The camera's encoder restarted (another size, say), and this hub saw its stream only
    # from mid-group: nothing until its key frame, which comes with the new init segment.
    feed.deliver(_frame(5, key=False, stream="s2"))
    feed.deliver(_frame(6, key=True, stream="s2"))
    assert _written(connection) == ["init-s1", "fragment-s1-1", "init-s2", "fragment-s2-6"]
    await feed.stop()
