"""The JSON an alert is told with, the same for webhooks, MQTT and the browser (README,
"Notifications")."""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 1


def absolute_url(path: str) -> str:
    """`path` under PUBLIC_URL (the address people reach Sightline at), or the bare path
    while PUBLIC_URL is not set."""
    return f"{settings.PUBLIC_URL}{path}" if settings.PUBLIC_URL else path


def iso_time(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def event_links(event_pk: int) -> dict[str, str]:
    return {
        "page": absolute_url(reverse("event", args=[event_pk])),
        "snapshot": absolute_url(reverse("api-event-snapshot", args=[event_pk])),
        "clip": absolute_url(reverse("api-event-clip", args=[event_pk])),
    }


def event_body(
    *,
    event_pk: int,
    camera_public_id: str,
    camera_name: str,
    label: str,
    track_id: int | None,
    zones: list[str],
    started_at: datetime,
    last_seen_at: datetime,
    ended_at: datetime | None,
    peak_confidence: float,
) -> dict[str, Any]:
    return {
        "id": event_pk,
        "camera": {"id": camera_public_id, "name": camera_name},
        "label": label,
        "track_id": track_id,
        "zones": sorted(zones),
        "started_at": iso_time(started_at),
        "last_seen_at": iso_time(last_seen_at),
        "ended_at": iso_time(ended_at),
        "duration_seconds": round(max((last_seen_at - started_at).total_seconds(), 0.0), 3),
        "peak_confidence": round(peak_confidence, 4),
        "links": event_links(event_pk),
    }


def snapshot_base64(name: str) -> str | None:
    """The stored snapshot as base64, or None if it has none or it cannot be read."""
    if not name:
        return None
    try:
        with default_storage.open(name, "rb") as file:
            return base64.b64encode(file.read()).decode("ascii")
    except OSError:
        logger.warning("Could not read the snapshot %s for an alert", name, exc_info=True)
        return None


def alert_body(
    *,
    alert_pk: int,
    created_at: datetime,
    source_kind: str,
    source_pk: int,
    source_name: str,
    organization_slug: str,
    event: dict[str, Any],
) -> dict[str, Any]:
    return {
        "version": PAYLOAD_VERSION,
        "type": "alert",
        "alert": {"id": alert_pk, "created_at": iso_time(created_at)},
        source_kind: {"id": source_pk, "name": source_name},
        "organization": organization_slug,
        "event": event,
    }
