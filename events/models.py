"""What the cameras saw, kept: detection events with snapshots, and camera sessions.

The unit every count in the product uses is the *event* (see `events.tracking`): one tracked
object's visit to one camera (for motion, a continuous presence of motion), counted once, in the
period in which it started.
"""

from __future__ import annotations

from django.db import models

from cameras.models import Camera
from organizations.models import Organization


class CameraSession(models.Model):
    """A span during which a camera was online and processing frames."""

    # The organization is copied from the camera so that every scoped query is one join short.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="camera_sessions"
    )
    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="sessions")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Empty while it lasts.")
    last_frame_at = models.DateTimeField()
    frames_processed = models.PositiveIntegerField(default=0)
    measured_fps = models.FloatField(default=0.0)
    counts = models.JSONField(
        default=dict, blank=True, help_text="Events started per class during the session."
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["camera", "-started_at"]),
            models.Index(fields=["organization", "-started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.camera} from {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @property
    def event_total(self) -> int:
        return sum(self.counts.values())


class DetectionEvent(models.Model):
    """One tracked object's visit to one camera, or for an untracked class (motion) a
    continuous presence of it; short gaps tolerated."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="detection_events"
    )
    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="events")
    session = models.ForeignKey(
        CameraSession,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
    )
    label = models.CharField(max_length=64, help_text="The detector's class, e.g. person.")
    track_id = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The object's track id in the live stream's detections; empty for motion.",
    )
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text="When the class was last seen; empty while ongoing."
    )
    peak_confidence = models.FloatField()
    frames_seen = models.PositiveIntegerField(default=1)
    best_bbox = models.JSONField(
        default=list, help_text="[x, y, width, height] of the best detection, in frame pixels."
    )
    path = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "Where the object's box was: [ms since the start, x, y, width, height] points, the "
            "box in fractions of the frame, oldest first (see events.tracking.Path)."
        ),
    )
    # A JPEG of the best frame with its box drawn, written through the default storage by the
    # recorder (see events.recording.snapshot_name for the layout).
    snapshot = models.FileField(upload_to="snapshots/", blank=True, max_length=255)
    # A tracked object's MP4 clip, from a little before it started to a little after it ended,
    # written by the clip recorder (see events.clips); empty until then, for motion, and once
    # the disk budget (RECORDINGS_MAX_GB) took it.
    clip = models.FileField(upload_to="clips/", blank=True, max_length=255)
    clip_started_at = models.DateTimeField(
        null=True, blank=True, help_text="The capture time of the clip's first frame."
    )
    clip_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    clip_bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-started_at"]),
            models.Index(fields=["camera", "-started_at"]),
            models.Index(fields=["organization", "label", "-started_at"]),
            # The disk budget deletes the oldest clips first.
            models.Index(
                fields=["started_at", "id"],
                condition=~models.Q(clip=""),
                name="events_with_clip_by_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} on {self.camera} at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @property
    def duration_seconds(self) -> float:
        return max((self.last_seen_at - self.started_at).total_seconds(), 0.0)

    @property
    def clip_preroll_ms(self) -> int:
        """How far into the clip the event starts: where its path's time 0 is in the video."""
        if self.clip_started_at is None:
            return 0
        return round((self.started_at - self.clip_started_at).total_seconds() * 1000)


class EventZone(models.Model):
    """A zone (`Camera.zones`) an event's object entered, and when it first did."""

    event = models.ForeignKey(DetectionEvent, on_delete=models.CASCADE, related_name="zones")
    zone = models.CharField(max_length=40)
    entered_at = models.DateTimeField()

    class Meta:
        ordering = ["entered_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "zone"], name="one_entry_per_event_and_zone")
        ]
        indexes = [models.Index(fields=["zone"])]

    def __str__(self) -> str:
        return f"{self.zone} at {self.entered_at:%H:%M:%S}"
