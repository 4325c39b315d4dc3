"""Send webhook deliveries as a process of their own, for deployments that want the worker
apart from runcameras (which runs one too; any number of workers share the outbox safely)."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from notifications.delivery import DeliveryWorker


class Command(BaseCommand):
    help = "Send due webhook deliveries, and retry failed ones, until SIGINT/SIGTERM."

    def handle(self, *args, **options):
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        worker = DeliveryWorker().start()
        self.stdout.write("Delivering webhooks; stop with Ctrl-C or SIGTERM.")
        try:
            stopping.wait()
        finally:
            worker.stop()
        self.stdout.write("Webhook delivery stopped.")
