"""Every ingest request is counted by how it ended, in `sightline_ingest_frames_total`: real
frames accepted and repeated, refused ones, and a Redis (of the test's own) that is away."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.cameras.conftest import jpeg_b64, now_ms
from tests.conftest import free_port, start_with_room_in_the_window
from tests.own_redis import caches

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/actions/actions/send"


def outcomes() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value("sightline_ingest_frames_total", {"outcome": outcome})
        or 0.0
        for outcome in ("accepted", "duplicate", "rejected", "rate_limited", "unavailable", "error")
    }


def body(camera, timestamp: int, frame: str | None = None) -> dict:
    return {
        "streamName": "test",
        "streamType": "frame",
        "frame": frame or jpeg_b64(),
        "timestamp": timestamp,
        "camera_id": camera.public_id,
    }


def test_ingest_outcomes_are_counted(alice_api, push_camera, settings):
    settings.CAMERA_INGEST_MAX_FRAMES_PER_SECOND = 1
    start_with_room_in_the_window(0.6, window=1)  # the accepted and the refused frame in one second
    before = outcomes()
    timestamp = now_ms()
    assert alice_api.post(URL, body(push_camera, timestamp), format="json").status_code == 200
    assert alice_api.post(URL, body(push_camera, timestamp), format="json").status_code == 200
    assert (
        alice_api.post(
            URL, body(push_camera, timestamp + 1, "bm90IGEganBlZw=="), format="json"
        ).status_code
        == 400
    )
    assert alice_api.post(URL, body(push_camera, timestamp + 2), format="json").status_code == 429
    after = outcomes()
    assert {k: after[k] - before[k] for k in after} == {
        "accepted": 1,
        "duplicate": 1,
        "rejected": 1,
        "rate_limited": 1,
        "unavailable": 0,
        "error": 0,
    }


@pytest.mark.redis
def test_ingest_while_redis_is_away_is_counted_unavailable(alice_api, push_camera, settings):
    # Nothing listens on a free port: a Redis that is away.
    settings.CACHES = caches(f"redis://127.0.0.1:{free_port()}/0")
    alice_api.raise_request_exception = False
    before = outcomes()
    response = alice_api.post(URL, body(push_camera, now_ms()), format="json")
    after = outcomes()
    assert response.status_code == 503
    assert response["Retry-After"]
    assert response.json()["code"] == "unavailable"
    assert after["unavailable"] - before["unavailable"] == 1
