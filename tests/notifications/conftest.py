"""Notifications fixtures: the events tests' cameras and recorder, and rules to match with."""

from __future__ import annotations

from tests.events.conftest import (  # noqa: F401  (fixtures)
    _close_connections_of_the_shared_sync_thread,
    back_yard,
    charlie_camera,
    front_door,
    recorder,
)
