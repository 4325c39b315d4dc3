"""The clips benchmark's harness, run very briefly so it cannot silently rot: the real pipeline
on the demo scene with and without clips, in one run, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_run_measures_both_modes_and_writes_its_figures(tmp_path):
    env = {**os.environ, "DJANGO_SECRET_KEY": "bench-only-secret-key"}
    env.pop("DATABASE_URL", None)  # its own SQLite file, never the test database
    completed = subprocess.run(
        [sys.executable, "-m", "bench.clips", "--seconds", "1.5", "--rounds", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "without clips:" in completed.stdout and "with clips:" in completed.stdout
    written = completed.stdout.rsplit("written to ", 1)[1].strip()
    result = json.loads((ROOT / written).read_text())
    (ROOT / written).unlink()
    assert result["runs"]["off"][0]["frames"] > 0 and result["runs"]["on"][0]["frames"] > 0
    assert result["runs"]["off"][0]["clips_written"] == 0
    assert {"fps_without_clips", "fps_with_clips", "cost_percent"} <= result.keys()
