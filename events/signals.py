"""What the recorder tells other apps, without knowing them.

`events_recorded` is sent by the recorder's flush for each camera whose events it wrote, inside
the same transaction as the rows: a receiver that writes (the alerts of `notifications`) commits
or rolls back with the events. A receiver must not do slow work there (no network); it can hand
work to `transaction.on_commit`. Receivers must contain their own failures: an exception escaping
one fails the camera's write, which is retried at the next flush.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.dispatch import Signal


@dataclass(frozen=True)
class RecordedEvent:
    """One event row as this flush wrote it."""

    pk: int
    label: str
    track_id: int | None
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    peak_confidence: float
    zones: frozenset[str]  # every zone the object has entered so far
    snapshot: str  # the snapshot's storage name, "" while it has none
    created: bool  # this flush inserted the row (the event is new)

    @property
    def duration_seconds(self) -> float:
        return max((self.last_seen_at - self.started_at).total_seconds(), 0.0)


# Sent with: organization_pk, camera_pk, camera_public_id, events (list[RecordedEvent]).
events_recorded = Signal()
