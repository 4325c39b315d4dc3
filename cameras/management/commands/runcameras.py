"""Run the capture workers as their own process (production, with REDIS_URL).

Its Prometheus metrics (frames captured, published and dropped, worker restarts) live in this
process, so `--metrics-port` (or CAMERA_METRICS_PORT) serves them on 127.0.0.1 for a local
Prometheus or agent to scrape.
"""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import start_http_server

from cameras.capture import CameraSupervisor
from notifications.delivery import DeliveryWorker
from notifications.mqtt import start_mqtt_publisher, stop_mqtt_publisher


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
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.CAMERA_METRICS_PORT,
            metavar="PORT",
            help="Serve this process's Prometheus metrics at http://127.0.0.1:PORT/metrics "
            "(default: CAMERA_METRICS_PORT; 0 = not served).",
        )

    def handle(self, *args, cameras=None, metrics_port=0, **options):
        if not settings.REDIS_URL:
            self.stderr.write(
                self.style.WARNING(
                    "REDIS_URL is not set: frames go to this process's in-memory channel layer, "
                    "which no web server can see. Set REDIS_URL (and CAMERAS_IN_PROCESS=0 for "
                    "daphne), or let daphne run the cameras itself."
                )
            )
        metrics_server = None
        if metrics_port:
            try:
                metrics_server, _ = start_http_server(metrics_port, addr="127.0.0.1")
            except OSError as exc:
                raise CommandError(
                    f"Cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}"
                ) from None
            self.stdout.write(f"Metrics at http://127.0.0.1:{metrics_port}/metrics")
        # This process records: it publishes its events and counts over MQTT (if MQTT_URL),
        # and its worker sends the webhook alerts it raises (and those other processes wrote:
        # any number of runcameras share the outbox safely).
        start_mqtt_publisher()
        delivery_worker = DeliveryWorker().start()
        try:
            asyncio.run(self._run(cameras))
        finally:
            delivery_worker.stop()
            stop_mqtt_publisher()
            if metrics_server is not None:
                metrics_server.shutdown()
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
