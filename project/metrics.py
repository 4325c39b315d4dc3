"""Every Prometheus metric Sightline exports, in one place, so names and labels stay consistent.

Each process exports its own (`GET /metrics` on every daphne, `runcameras --metrics-port` for a
camera process): counters are per process since its start, as Prometheus expects, and its
`rate()` and `sum by` do the adding up across processes.

Labels are bounded: `camera` is a camera's public id (an organization has tens, not thousands),
the others take a handful of fixed values.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- cameras -------------------------------------------------------------------------------
FRAMES_CAPTURED = Counter(
    "sightline_frames_captured",
    "Frames read from a camera's source and processed (detection ran or was due).",
    ["camera"],
)
FRAMES_PUBLISHED = Counter(
    "sightline_frames_published",
    "Frames broadcast to a camera's viewers.",
    ["camera"],
)
FRAMES_DROPPED = Counter(
    "sightline_frames_dropped",
    "Frames not broadcast: `busy` (the previous frame was still on its way), `slow_viewer` "
    "(a viewer's newest-frame slot was overwritten), `error` (the broadcast failed, e.g. Redis "
    "was away).",
    ["camera", "reason"],
)
CAPTURE_WORKER_RESTARTS = Counter(
    "sightline_capture_worker_restarts",
    "Capture workers restarted by the supervisor after they crashed.",
    ["camera"],
)
CAPTURE_WORKERS = Gauge(
    "sightline_capture_workers",
    "Capture workers of this process: `running`, or `restarting` (crashed, waiting to restart).",
    ["state"],
)
CAMERA_LEASES = Gauge(
    "sightline_camera_leases",
    "Cameras whose lease this process holds (with REDIS_URL: each camera is read by one process).",
)
CAMERA_LEASE_CHANGES = Counter(
    "sightline_camera_lease_changes",
    "Camera leases this process took, gave back (shutting down, or above its fair share), lost "
    "to another process, or let lapse (it could not renew them in time, e.g. Redis was away).",
    ["change"],
)
CAPTURE_ERRORS = Counter(
    "sightline_capture_errors",
    "Failures a capture worker or the frame pipeline contained and went on from, by stage "
    "(frame_record, latest_frame, broadcast, status, or the name of a frame receiver: recorder).",
    ["camera", "stage"],
)
CAPTURE_SUPERVISOR_FAILURES = Counter(
    "sightline_capture_supervisor_failures",
    "Capture supervisor turns that failed (e.g. the database was away); retried next turn.",
)
VIEWERS = Gauge(
    "sightline_viewers",
    "WebSocket viewers connected to this process, per camera.",
    ["camera"],
)
VARIANT_ENCODES = Counter(
    "sightline_variant_encodes",
    "Frames decoded, resized and re-encoded for a reduced stream variant (`?width=&fps=`), "
    "once per variant frame in a process whatever its number of viewers; `variant` is e.g. "
    "`320px@5fps` (bounded: see cameras/variants.py).",
    ["camera", "variant"],
)
STREAM_VARIANTS = Gauge(
    "sightline_stream_variants",
    "Variant encoders running in this process, per camera (one per variant being watched).",
    ["camera"],
)
VIDEO_ENCODERS = Gauge(
    "sightline_video_encoders",
    "H.264 encoders running in this process, per camera: 1 while some process has an H.264 "
    "viewer of the camera and this process reads it (see cameras/video_track.py).",
    ["camera"],
)
VIDEO_FRAMES_ENCODED = Counter(
    "sightline_video_frames_encoded",
    "Frames encoded as H.264, once per camera whatever the number of its viewers.",
    ["camera"],
)
VIDEO_VIEWER_SKIPS = Counter(
    "sightline_video_viewer_skips",
    "Times an H.264 viewer was too far behind (or a fragment was lost on the way) and skipped "
    "to the next key frame.",
    ["camera", "reason"],
)
INGEST_FRAMES = Counter(
    "sightline_ingest_frames",
    "Pushed frames by outcome (accepted, duplicate, rejected, rate_limited, unavailable, error).",
    ["outcome"],
)

# --- chats ---------------------------------------------------------------------------------
SSE_STREAMS = Gauge(
    "sightline_sse_streams",
    "Server-Sent Event responses open in this process.",
)
REPLIES = Counter(
    "sightline_replies",
    "Assistant replies finished, by final status (complete, stopped, failed).",
    ["status"],
)
BACKEND_ERRORS = Counter(
    "sightline_backend_errors",
    "Replies that ended because the assistant backend failed.",
    ["backend"],
)
REPLIES_EXPIRED = Counter(
    "sightline_replies_expired",
    "Streaming replies marked failed because their run stopped heartbeating (lost to a "
    "restart or crash), by the sweeper or a read.",
)
STALE_REPLY_SWEEP_FAILURES = Counter(
    "sightline_stale_reply_sweep_failures",
    "Sweeps for stale replies that failed (e.g. the database was away); retried next tick.",
)
REPLY_FLUSH_FAILURES = Counter(
    "sightline_reply_flush_failures",
    "Writes of a reply's text so far (its heartbeat) that failed, e.g. the database was away; "
    "the run goes on and retries with all its text.",
)

# --- events recorder -----------------------------------------------------------------------
RECORDER_FLUSH_SECONDS = Histogram(
    "sightline_recorder_flush_seconds",
    "Time one recorder flush took (all cameras).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RECORDER_FLUSH_FAILURES = Counter(
    "sightline_recorder_flush_failures",
    "A camera's events could not be written at a flush (retried at the next one).",
    ["camera"],
)
RECORDER_STATE_REBUILDS = Counter(
    "sightline_recorder_state_rebuilds",
    "A camera's recorder state was rebuilt from the database after repeated failures.",
    ["camera"],
)

# --- notifications -------------------------------------------------------------------------
MQTT_DROPPED = Counter(
    "sightline_mqtt_dropped",
    "MQTT messages given up: `queue_full` (the oldest, past MQTT_QUEUE_MAX while the broker was "
    "away), `unsendable` (the client refused it, e.g. a payload too large).",
    ["reason"],
)
MQTT_PUBLISHED = Counter(
    "sightline_mqtt_published",
    "MQTT messages the broker acknowledged (QoS 1).",
)
MQTT_QUEUE_DEPTH = Gauge(
    "sightline_mqtt_queue_depth",
    "MQTT messages waiting in this process's queue (for the broker, or behind those in flight).",
)
MQTT_CONNECTED = Gauge(
    "sightline_mqtt_connected",
    "1 while this process's MQTT publisher is connected to the broker, else 0.",
)

# --- shared plumbing -----------------------------------------------------------------------
CHANNEL_LAYER_RECONNECTS = Counter(
    "sightline_channel_layer_reconnects",
    "Long-lived channel-layer receives that lost the layer (e.g. Redis restarted) and resumed.",
    ["where"],
)

# --- notifications -------------------------------------------------------------------------
WEBHOOK_DELIVERIES = Counter(
    "sightline_webhook_deliveries",
    "Webhook delivery attempts by outcome: `delivered` (2xx), `retried` (failed, tried again "
    "later), `failed` (given up: the retry period is over, or a test send failed).",
    ["outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "sightline_webhook_delivery_seconds",
    "Time one webhook POST took, answered or not (resolving, connecting, sending, the answer).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_WORKER_FAILURES = Counter(
    "sightline_webhook_worker_failures",
    "Turns of the webhook delivery worker that failed (e.g. the database was away); retried "
    "with backoff.",
)
