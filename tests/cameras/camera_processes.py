"""`manage.py runcameras` as production runs it: a process of its own, on this test's database
and a given Redis, for the tests that kill, stop and start camera processes."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import IO

from tests.conftest import ROOT, _database_url_of_test_database


def runcameras_start(
    redis_url: str,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    output: int | IO = subprocess.PIPE,
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runcameras", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": _database_url_of_test_database(),
            "DJANGO_SECRET_KEY": "test-only-secret-key",
            "REDIS_URL": redis_url,
            "CAMERA_RELOAD_SECONDS": "0.5",
            "EVENTS_RECORDING": "0",
            **(env or {}),
        },
        stdout=output,
        stderr=subprocess.STDOUT,
    )
