"""A property-based fuzz run of the whole API against its own published schema.

Schemathesis reads /api/v1/schema from a real daphne on 127.0.0.1 and sends every operation
generated valid and invalid input (bodies, query strings, path ids, headers), authenticated with
the bearer token of a user whose organization has cameras, chats, replies, events and sessions.
Every answer must be no 5xx and must match the schema: its status documented, its media type,
its headers and its body (SSE events included) as described.

Bounded and repeatable: a fixed seed with deterministic generation, a fixed number of examples
per operation, one worker, and the capture workers off in that daphne (CAMERAS_IN_PROCESS=0),
so a camera the fuzzer creates (`demo:`, a file, a URL) is stored and validated but never opens
a source: no capture storm on CI's two cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree

import pytest
from django.utils import timezone

from cameras.services import camera_create
from chats.models import Message
from chats.services import chat_create, message_finish, message_send
from events.models import CameraSession, DetectionEvent
from organizations.services import api_token_create

SEED = 20261201
EXAMPLES_PER_OPERATION = 10
# "No 500s and no response that breaks the schema", and that authentication is enforced
# (ignored_auth), deleted objects are gone (use_after_free), created ones can be read
# (ensure_resource_availability), an undeclared method is a 405 with `Allow`.
# Not run: positive_data_acceptance and negative_data_rejection, which demand that the schema
# states every rule the services apply (a camera source's grammar, a title that is not only
# spaces); the schema gives types and bounds, and the rest is answered 400 with `fields`.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "missing_required_header",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
    "unsupported_method",
    "allow_header_conformance",
]
# ~90 s on two idle cores (SQLite); the bound is for a CI machine under load.
TIME_LIMIT_SECONDS = 480


def _data_for(user, organization) -> None:
    """What a real account holds, so generated ids and filters meet real rows."""
    now = timezone.now()
    pushed = camera_create(organization=organization, name="Front door", source="push:")
    camera_create(organization=organization, name="Yard", source="push:", enabled=False)
    session = CameraSession.objects.create(
        organization=organization,
        camera=pushed,
        started_at=now - timedelta(hours=2),
        last_frame_at=now - timedelta(hours=1),
        ended_at=now - timedelta(hours=1),
        frames_processed=3600,
        measured_fps=10.0,
        counts={"person": 3},
    )
    for minutes, label in ((90, "person"), (80, "car"), (70, "person")):
        at = now - timedelta(minutes=minutes)
        DetectionEvent.objects.create(
            organization=organization,
            camera=pushed,
            session=session,
            label=label,
            started_at=at,
            last_seen_at=at + timedelta(seconds=5),
            ended_at=at + timedelta(seconds=5),
            peak_confidence=0.9,
            frames_seen=50,
            best_bbox=[10, 20, 30, 40],
        )
    for title in ("Night shift", "Deliveries"):
        chat = chat_create(user=user, organization=organization, title=title)
        _, reply = message_send(chat=chat, prompt="Who came to the door?")
        message_finish(message_id=reply.pk, content="Two people.", status=Message.Status.COMPLETE)


def _schemathesis() -> str:
    executable = Path(sys.executable).with_name("schemathesis")
    if not executable.exists():
        pytest.fail(
            f"schemathesis is not installed next to {sys.executable} (pip install -e '.[test]')"
        )
    return str(executable)


def _junit_failures(report: Path) -> list[str]:
    failures = []
    for case in ElementTree.parse(report).iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            failures.append(
                f"{case.get('name')}: {(problem.get('message') or problem.text or '')[:2000]}"
            )
    return failures


@pytest.mark.fuzz
@pytest.mark.timeout(TIME_LIMIT_SECONDS + 60)
def test_the_api_survives_a_fuzz_run_against_its_own_schema(
    live_daphne, alice, organization, tmp_path
):
    _data_for(alice, organization)
    _, token = api_token_create(user=alice, name="fuzz")
    server = live_daphne(
        CAMERAS_IN_PROCESS="0",
        ASSISTANT_BUILTIN_DELAY_MS="0",
        # The fuzzer's prompts should reach the assistant, not the per-user rate limit.
        CHAT_RATE_LIMIT_PER_MINUTE="100000",
        LOG_LEVEL="WARNING",
    )
    report = tmp_path / "junit.xml"
    started = time.monotonic()
    run = subprocess.run(
        [
            _schemathesis(),
            "run",
            f"{server.url}/api/v1/schema?format=json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            str(SEED),
            "--generation-deterministic",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        # Its caches (.schemathesis, .hypothesis) go there too: no run replays an earlier one's.
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_SECONDS,
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    print(output[output.find("SUMMARY") - 40 :])
    print(f"fuzz run: {elapsed:.0f} s")
    assert report.exists(), output[-6000:]
    failures = _junit_failures(report)
    assert not failures, output[output.find("FAILURES") : output.find("SUMMARY")][:30000]
    assert run.returncode == 0, output[-6000:]
    # It really ran: every operation of the schema, with many generated requests.
    operations = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    generated = re.search(r"(\d+) generated", output)
    assert operations and operations.group(1) == operations.group(2), output[-3000:]
    assert int(operations.group(2)) >= 28 and int(generated.group(1)) >= 1000, output[-3000:]
    assert "Traceback" not in server.log(), server.log()[-5000:]
