"""Cameras fixtures: Alice's demo and push cameras, Charlie's camera, real JPEG bytes."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
import pytest

from cameras.services import camera_create
from organizations.services import api_token_create

# A checksum of the player canvas's pixels: it changes when the picture does.
CANVAS_CHECKSUM = """() => {
  const canvas = document.getElementById("player-canvas");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < data.length; i += 97) sum = (sum * 31 + data[i]) >>> 0;
  return sum;
}"""


@pytest.fixture
def orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # async code: allow this test's own ORM calls (the live daphne keeps the check on).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def jpeg_bytes(width: int = 320, height: int = 240, *, seed: int = 0) -> bytes:
    """A real JPEG encoded by OpenCV: a still gradient with a bright square that moves with seed."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)
    image[:, :, 1] = 60
    x = (seed * 13) % max(1, width - 40)
    cv2.rectangle(image, (x, 40), (x + 40, 80), (255, 255, 255), -1)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buffer.tobytes()


def jpeg_b64(**kwargs) -> str:
    return base64.b64encode(jpeg_bytes(**kwargs)).decode()


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def demo_camera(organization):
    return camera_create(
        organization=organization, name="Lobby", source="demo:", detectors=["motion"]
    )


@pytest.fixture
def push_camera(organization):
    return camera_create(
        organization=organization, name="Webcam", source="push:", detectors=["motion"]
    )


@pytest.fixture
def charlie_camera(charlie_organization):
    return camera_create(organization=charlie_organization, name="Charlie's door", source="demo:")


@pytest.fixture
def live_camera(alice, organization):
    """A live 30 fps 640 px demo camera with motion detection, and a token of its owner."""
    camera = camera_create(
        organization=organization,
        name="Live demo",
        source="demo:",
        target_fps=30,
        max_width=640,
        detectors=["motion"],
    )
    _, token = api_token_create(user=alice)
    return camera, token
