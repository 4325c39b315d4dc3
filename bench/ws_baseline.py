"""The yardstick for Sightline's camera fan-out: a minimal `websockets` broadcast server.

One producer renders the demo scene at the camera's fps (off the event loop), JPEG-encodes it,
builds the seed's FrameData JSON once and broadcasts the same bytes to every viewer with
`websockets.broadcast` (compression off). A new viewer gets the latest frame at once.

`websockets.broadcast` itself never skips anyone: it appends to every write buffer. So that a slow
viewer skips frames instead of making this server buffer without bound (the behaviour Sightline
must match), a viewer whose write buffer still holds more than `SKIP_WHEN_BUFFERED_BYTES` is left
out of that frame. The detections are the demo scene's true boxes: a realistic payload at no cost.

    python -m bench.ws_baseline --port 8765 --fps 30
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

from cameras.vision.demo import DemoScene
from cameras.vision.frames import encode_jpeg

# About one 640x480 frame: a viewer still working through more than that gets no new frame.
SKIP_WHEN_BUFFERED_BYTES = 64 * 1024
CAMERA_ID = "baseline"


class FrameMaker:
    """Renders and encodes the frame of a given moment into FrameData bytes."""

    def __init__(self, *, width: int, height: int, jpeg_quality: int) -> None:
        self.scene = DemoScene(width, height, seed=0)
        self.jpeg_quality = jpeg_quality

    def message_at(self, t: float) -> bytes:
        jpeg = encode_jpeg(self.scene.frame_at(t), self.jpeg_quality)
        detections = [
            {"class": name, "confidence": 0.9, "bbox": list(box)}
            for name, box in (
                ("person", self.scene.person_box(t)),
                ("car", self.scene.car_box(t)),
                ("sports ball", self.scene.ball_box(t)),
            )
        ]
        message = {
            "frame": base64.b64encode(jpeg).decode("ascii"),
            "timestamp": int(t * 1000),
            "camera_id": CAMERA_ID,
            "detections": detections,
        }
        return json.dumps(message, separators=(",", ":")).encode()


async def run(
    *, host: str, port: int, fps: float, width: int, height: int, jpeg_quality: int, seconds: float
) -> None:
    maker = FrameMaker(width=width, height=height, jpeg_quality=jpeg_quality)
    viewers: set[ServerConnection] = set()
    latest: list[bytes] = []

    async def handler(connection: ServerConnection) -> None:
        if latest:
            await connection.send(latest[0], text=True)
        viewers.add(connection)
        try:
            await connection.wait_closed()
        finally:
            viewers.discard(connection)

    loop = asyncio.get_running_loop()
    period = 1.0 / fps
    async with serve(handler, host, port, compression=None, max_size=64 * 1024):
        print(f"baseline listening on ws://{host}:{port}/", flush=True)
        stop_at = loop.time() + seconds
        next_tick = loop.time()
        while loop.time() < stop_at:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            # The capture time, as a camera stamps it: encoding is part of the latency.
            message = await asyncio.to_thread(maker.message_at, time.time())
            latest[:] = [message]
            ready = [
                viewer
                for viewer in viewers
                if viewer.transport.get_write_buffer_size() <= SKIP_WHEN_BUFFERED_BYTES
            ]
            broadcast(ready, message, text=True)
            next_tick += period
            # Like a camera, drop the frames we are late for instead of bursting to catch up.
            if loop.time() - next_tick > period:
                next_tick = loop.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--jpeg-quality", type=int, default=75)
    parser.add_argument(
        "--seconds", type=float, default=3600.0, help="stop by itself after this long"
    )
    args = parser.parse_args()
    asyncio.run(
        run(
            host=args.host,
            port=args.port,
            fps=args.fps,
            width=args.width,
            height=args.height,
            jpeg_quality=args.jpeg_quality,
            seconds=args.seconds,
        )
    )


if __name__ == "__main__":
    main()
