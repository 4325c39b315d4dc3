"""Fragmented MP4 (ISO/IEC 14496-12, with the AVC file format of 14496-15) for one H.264 track,
as Media Source Extensions take it: an init segment once, then one fragment per frame.

Written by hand rather than through FFmpeg's mp4 muxer because that muxer closes a fragment
only when the next frame arrives (it needs the sample's duration): a frame would reach the
browser one frame interval late, 100 ms at 10 fps. Here each fragment is complete the moment its
frame is encoded, with the camera's nominal frame interval as its duration; the media timeline
counts frames (`decode time = frame number × interval`), so it has no gaps for MSE to stall at
whatever the real capture times were (those travel beside each fragment, see `cameras.video`).

Only what MSE needs is written: no edit lists, no sample tables in the init segment (the
fragments carry them), one sample per fragment.
"""

from __future__ import annotations

import struct

TIMESCALE = 90_000  # the usual video clock: whole units for every common frame rate
TRACK_ID = 1

# trun sample flags (14496-12, 8.8.3.1): a sync sample depends on nothing; any other sample
# depends on others and is not a sync sample.
_SYNC_SAMPLE = 0x02000000
_NON_SYNC_SAMPLE = 0x01010000
_UNITY_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def codec_string(sps: bytes) -> str:
    """The RFC 6381 codec of a stream, as `MediaSource.isTypeSupported` wants it:
    `avc1.` + profile, constraint flags and level of the sequence parameter set, in hex."""
    return "avc1." + sps[1:4].hex()


def _avc_configuration(sps: bytes, pps: bytes) -> bytes:
    # AVCDecoderConfigurationRecord (14496-15, 5.3.3.1). NAL lengths are 4 bytes (0xFF: 6
    # reserved bits set, lengthSizeMinusOne 3); one SPS (0xE1: 3 reserved bits, count 1) and
    # one PPS. Baseline and main profile need none of the high-profile extension fields.
    return _box(
        b"avcC",
        bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1)),
        struct.pack(">H", len(sps)),
        sps,
        b"\x01",
        struct.pack(">H", len(pps)),
        pps,
    )


def init_segment(*, sps: bytes, pps: bytes, width: int, height: int) -> bytes:
    """ftyp + moov for one H.264 track of `width`×`height` pixels (the SPS's own size)."""
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso6avc1mp41")
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),  # created, modified, timescale, duration
        struct.pack(">IH", 0x00010000, 0x0100),  # rate 1.0, volume 1.0
        bytes(10),
        _UNITY_MATRIX,
        bytes(24),
        struct.pack(">I", TRACK_ID + 1),  # next track id
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        0x000003,  # enabled, in the movie
        struct.pack(">IIIII", 0, 0, TRACK_ID, 0, 0),  # created, modified, id, reserved, duration
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate group, volume, reserved
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(
        b"mdhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, TIMESCALE, 0),
        struct.pack(">HH", 0x55C4, 0),  # language "und"
    )
    hdlr = _full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"Sightline video\x00")
    avc1 = _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data reference index
        bytes(16),
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x00480000, 0x00480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frames per sample
        bytes(32),  # compressor name
        struct.pack(">Hh", 0x0018, -1),  # depth, pre-defined
        _avc_configuration(sps, pps),
    )
    empty_table = struct.pack(">I", 0)
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, empty_table),
        _full_box(b"stsc", 0, 0, empty_table),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, empty_table),
    )
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    minf = _box(b"minf", _full_box(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    mvex = _box(b"mvex", _full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, 0, 0, 0)))
    return ftyp + _box(b"moov", mvhd, trak, mvex)


def media_fragment(
    *, sequence: int, decode_time: int, duration: int, sample: bytes, key: bool
) -> bytes:
    """moof + mdat holding one sample: `sample` is the frame's NAL units, each prefixed with its
    4-byte length; `decode_time` and `duration` are in `TIMESCALE` units; `sequence` counts
    fragments from 1."""
    trun_flags = 0x000001 | 0x000100 | 0x000200 | 0x000400  # data offset, duration, size, flags
    # The trun's size is fixed, so the data offset (from the moof's start to the sample, past
    # the mdat's header) is known before the moof is built.
    moof_size = 8 + 16 + 8 + 16 + 20 + 32  # moof, mfhd, traf, tfhd, tfdt, trun
    trun = _full_box(
        b"trun",
        0,
        trun_flags,
        struct.pack(
            ">IiIII",
            1,
            moof_size + 8,
            duration,
            len(sample),
            _SYNC_SAMPLE if key else _NON_SYNC_SAMPLE,
        ),
    )
    traf = _box(
        b"traf",
        _full_box(b"tfhd", 0, 0x020000, struct.pack(">I", TRACK_ID)),  # default-base-is-moof
        _full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time)),
        trun,
    )
    moof = _box(b"moof", _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), traf)
    assert len(moof) == moof_size, "the trun's data offset assumes this moof size"
    return moof + _box(b"mdat", sample)
