"""Run the capture workers as their own process (production, with REDIS_URL)."""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from cameras.capture import CameraSupervisor


class Command(BaseCommand):
    help = (
        "Capture every enabled camera (or those given with --camera) and publish their frames "
        "to the channel layer until SIGINT/SIGTERM; cameras are marked offline on the way out."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--camera",
            action="append",
            dest="cameras",
            metavar="ID",
            help="Only this camera's public id (repeatable). Default: all enabled cameras.",
        )

    def handle(self, *args, cameras=None, **options):
        if not settings.REDIS_URL:
            self.stderr.write(
                self.style.WARNING(
                    "REDIS_URL is not set: frames go to this process's in-memory channel layer, "
                    "which no web server can see. Set REDIS_URL (and CAMERAS_IN_PROCESS=0 for "
                    "daphne), or let daphne run the cameras itself."
                )
            )
        asyncio.run(self._run(cameras))
        self.stdout.write("Cameras stopped.")

    async def _run(self, cameras: list[str] | None) -> None:
        supervisor = CameraSupervisor(public_ids=cameras)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        run = asyncio.create_task(supervisor.run())
        self.stdout.write(
            f"Capturing {'cameras ' + ', '.join(cameras) if cameras else 'all enabled cameras'}; "
            "stop with Ctrl-C or SIGTERM."
        )
        stop_requested = asyncio.create_task(stopping.wait())
        await asyncio.wait({run, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            await supervisor.stop()
        stop_requested.cancel()
        await run
