"""Delete events and sessions older than EVENTS_RETENTION_DAYS, with their snapshot and clip
files, and the oldest clips beyond RECORDINGS_MAX_GB."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from events.services import events_prune


class Command(BaseCommand):
    help = (
        "Delete detection events and camera sessions older than EVENTS_RETENTION_DAYS "
        "(or --days), with their snapshot and clip files, then the oldest clips beyond "
        "RECORDINGS_MAX_GB. Run it daily, e.g. from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Keep this many days instead of EVENTS_RETENTION_DAYS.",
        )

    def handle(self, *args, **options):
        days = options["days"] if options["days"] is not None else settings.EVENTS_RETENTION_DAYS
        if days < 1:
            raise CommandError("--days must be at least 1")
        cutoff = timezone.now() - timedelta(days=days)
        result = events_prune(older_than=cutoff)
        self.stdout.write(
            f"Deleted {result.events} events, {result.sessions} sessions and "
            f"{result.snapshots} snapshot files older than {days} days "
            f"(before {cutoff:%Y-%m-%d %H:%M} UTC), and {result.clips} clip files."
        )
