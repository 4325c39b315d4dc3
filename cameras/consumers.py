"""`ws/stream/<camera_id>`: a camera's live frames, as the seed's FrameData JSON (default) or,
for clients that ask with `?format=binary` or the `sightline.binary` subprotocol, binary
messages (4-byte big-endian header length, JSON header, JPEG bytes) that skip base64.

`?format=h264` (or the `sightline.h264` subprotocol) gives the camera as H.264 in fragmented
MP4, in the same binary framing (see `cameras.video_fanout`): the latest JPEG frame at once,
then an init segment (header `kind: "init"`) and one fragment per frame (`kind: "video"`, with
the frame's capture timestamp, media time and detections). It is for the full stream only.

`?width=320&fps=5` asks for a reduced variant of the camera (see `cameras.variants`): the same
messages, smaller and fewer, encoded once per process and variant. Values outside the bounds
are closed with code 4400 and a reason saying the bounds, after the access check (a viewer
refused the camera learns nothing more about it).

The consumer is not a channel-layer group member: frames reach it through the process's
`CameraHub` (see `cameras.fanout`), which is what keeps per-viewer cost flat. For the same reason
revoked access reaches it through the process's one revocation listener (see
`organizations.revocation`): it is then closed with code 4403 within about a second.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from cameras.fanout import CameraHub, Outgoing, VariantEncoder, Viewer, hub_join, hub_leave
from cameras.publishing import PublishedFrame, alatest_frame_get
from cameras.selectors import camera_get_for_user
from cameras.transport import disable_nagle, framed_writer, pending_send_bytes
from cameras.variants import VARIANT_CLOSE_CODE, InvalidVariant, Variant, variant_from_query
from cameras.video_fanout import VideoFeed, VideoViewer
from organizations.revocation import (
    WEBSOCKET_CLOSE_CODE,
    OpenAccess,
    access_close,
    access_open,
    credential_for_websocket,
)

BINARY_SUBPROTOCOL = "sightline.binary"
H264_SUBPROTOCOL = "sightline.h264"
H264_VARIANT_REFUSAL = (
    "format=h264 streams the camera's full picture; leave out width and fps "
    "(reduced variants are JPEG: use format=binary with them)."
)


def _query(scope) -> dict[str, list[str]]:
    # Blank values kept: `?width=` is a bad width, not the full stream.
    return parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _stream_format(scope) -> tuple[str, str | None]:
    """ "json" (the seed's, for anything not asked otherwise), "binary" or "h264", and the
    subprotocol to accept."""
    subprotocols = scope.get("subprotocols", [])
    if H264_SUBPROTOCOL in subprotocols:
        return "h264", H264_SUBPROTOCOL
    if BINARY_SUBPROTOCOL in subprotocols:
        return "binary", BINARY_SUBPROTOCOL
    asked = _query(scope).get("format", [""])[0]
    return (asked if asked in ("binary", "h264") else "json"), None


class StreamConsumer(AsyncWebsocketConsumer):
    # No channel of its own: the hub receives for every viewer of the camera in this process.
    channel_layer_alias = "cameras.no-per-viewer-channel"

    camera_id: str | None = None
    viewer: Viewer | VideoViewer | None = None
    variant: Variant | None = None
    feed: CameraHub | VariantEncoder | VideoFeed | None = None
    access: OpenAccess | None = None
    accepted = False
    closing: asyncio.Future | None = None

    async def connect(self) -> None:
        # In a thread: a session credential reads the session (already loaded, as a rule).
        credential = await database_sync_to_async(credential_for_websocket)(self.scope)
        if credential is not None:
            # Registered before the access check: a revocation committed after the check is
            # broadcast after it too, and finds this socket.
            self.access = OpenAccess(credential, end=self._access_revoked)
            await access_open(self.access)
        requested = self.scope["url_route"]["kwargs"]["camera_id"]
        try:
            camera = await database_sync_to_async(camera_get_for_user)(
                user=self.scope.get("user"), public_id=requested
            )
        except BaseException:
            # Channels dispatches no disconnect to a consumer whose connect raised: released
            # here, or the entry (and the process's revocation listener) would stay forever.
            await self._release_access()
            raise
        if camera is None or self.access is None or self.access.ended:
            # Before accept: the handshake is refused (HTTP 403), nothing of the camera is sent.
            await self._release_access()
            await self.close()
            return
        self.access.organization_id = camera.organization_id
        stream_format, subprotocol = _stream_format(self.scope)
        try:
            self.variant = variant_from_query(_query(self.scope))
            if self.variant is not None and stream_format == "h264":
                raise InvalidVariant(H264_VARIANT_REFUSAL)
        except InvalidVariant as refusal:
            # Accepted to be closed: a browser sees a close code and reason, never a 403's body.
            await self._release_access()
            await self.accept(subprotocol=subprotocol)
            await self.close(code=VARIANT_CLOSE_CODE, reason=str(refusal))
            return
        self.accepted = True
        await self.accept(subprotocol=subprotocol)
        disable_nagle(self.base_send)
        self.camera_id = camera.public_id
        if stream_format == "h264":
            await self._start_video()
            return
        binary = stream_format == "binary"
        self.viewer = Viewer(
            send_frame=self._send_binary if binary else self._send_text,
            pending_bytes=lambda: pending_send_bytes(self.base_send),
            binary=binary,
            write_framed=framed_writer(self.base_send),
        )
        if self.access.ended:
            return  # revoked while accepting: closing, and never joins the hub
        latest = await alatest_frame_get(self.camera_id)
        if latest is not None and self.variant is None:
            await self.viewer.offer(Outgoing(latest))
        self.feed = await hub_join(self.camera_id, self.viewer, self.variant)
        if latest is not None and isinstance(self.feed, VariantEncoder):
            # A variant that has no frame yet makes one of the cached frame (ignored if older).
            self.feed.submit(latest)
        # The feed may hold a frame newer than the cache's (e.g. published while we joined).
        if self.feed.latest is not None:
            await self.viewer.offer(self.feed.latest)

    async def _start_video(self) -> None:
        self.viewer = VideoViewer(
            send_bytes=self._send_bytes,
            pending_bytes=lambda: pending_send_bytes(self.base_send),
            write_framed=framed_writer(self.base_send),
        )
        if self.access.ended:
            return  # revoked while accepting: closing, and never joins the hub
        # A picture at once, before the video can start (at the group the feed holds, or at
        # the key frame it asks the camera for).
        latest = await alatest_frame_get(self.camera_id)
        if latest is not None:
            await self._send_binary(latest)
        self.feed = await hub_join(self.camera_id, self.viewer)

    async def _send_bytes(self, payload: bytes) -> None:
        await self.base_send({"type": "websocket.send", "bytes": payload})

    async def _send_text(self, frame: PublishedFrame) -> None:
        await self.base_send({"type": "websocket.send", "text": frame.text})

    async def _send_binary(self, frame: PublishedFrame) -> None:
        await self.base_send({"type": "websocket.send", "bytes": frame.binary})

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # The stream is one-way; whatever a client sends is ignored (never answered, so a
        # client that sends but does not read cannot make us buffer replies).
        return

    def _access_revoked(self) -> None:
        # On the event loop, from the revocation listener: not one more frame, then close.
        if self.viewer is not None:
            self.viewer.close()
        if self.accepted:
            self.closing = asyncio.ensure_future(self.close(code=WEBSOCKET_CLOSE_CODE))
        # Not accepted yet: `connect` sees `access.ended` and refuses the handshake.

    async def _release_access(self) -> None:
        if self.access is not None:
            access, self.access = self.access, None
            await access_close(access)

    async def disconnect(self, code) -> None:
        if self.viewer is not None and self.camera_id is not None:
            await hub_leave(self.camera_id, self.viewer, self.variant)
            self.viewer = None
        await self._release_access()
