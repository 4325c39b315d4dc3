"""Settings as an operator meets them: manage.py without exporting the key, and a deployment
checklist (`check --deploy`) that the documented settings make clean."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ROOT

INSTALLATION_KEY = ROOT / ".secret_key"
PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FILE", "DJANGO_DEBUG"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def no_installation_key():
    if INSTALLATION_KEY.exists():
        pytest.skip(f"{INSTALLATION_KEY} exists here (scripts/serve wrote it); not touching it")


def test_manage_py_reads_the_key_from_the_file_DJANGO_SECRET_KEY_FILE_names(tmp_path):
    key = secrets.token_urlsafe(50)
    (tmp_path / "key").write_text(key + "\n")
    result = manage("shell", "-c", PRINT_KEY, DJANGO_SECRET_KEY_FILE=str(tmp_path / "key"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == key


def test_manage_py_reads_the_key_scripts_serve_wrote(no_installation_key):
    key = secrets.token_urlsafe(50)
    INSTALLATION_KEY.write_text(key + "\n")
    try:
        result = manage("shell", "-c", PRINT_KEY)
    finally:
        INSTALLATION_KEY.unlink()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == key


def test_a_key_file_that_cannot_be_read_or_is_empty_is_named(tmp_path):
    missing = manage("check", DJANGO_SECRET_KEY_FILE=str(tmp_path / "nowhere"))
    assert missing.returncode != 0
    assert f"DJANGO_SECRET_KEY_FILE='{tmp_path / 'nowhere'}' cannot be read" in missing.stderr
    (tmp_path / "empty").write_text("\n")
    empty = manage("check", DJANGO_SECRET_KEY_FILE=str(tmp_path / "empty"))
    assert empty.returncode != 0
    assert "is empty" in empty.stderr


def test_without_any_key_start_up_says_every_way_to_give_one(no_installation_key):
    result = manage("check")
    assert result.returncode != 0
    for way in ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FILE", "scripts/serve", "DJANGO_DEBUG=1"):
        assert way in result.stderr


def test_check_deploy_is_clean_with_the_documented_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SECURE_COOKIES="1",
        DJANGO_SECURE_PROXY_SSL_HEADER="1",
        DJANGO_SECURE_SSL_REDIRECT="1",
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        DJANGO_SECURE_HSTS_PRELOAD="1",
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


PRINT_DATABASE = (
    "import json; from django.conf import settings; d = settings.DATABASES['default']; "
    "print(json.dumps({'options': d.get('OPTIONS', {}), 'conn_max_age': d['CONN_MAX_AGE']}))"
)
POSTGRES_URL = "postgres://sightline@127.0.0.1:5432/sightline"


def database_settings(**env: str) -> dict:
    result = manage("shell", "-c", PRINT_DATABASE, DJANGO_SECRET_KEY="k", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_postgresql_gets_a_connection_pool_sized_by_settings():
    pooled = database_settings(
        DATABASE_URL=POSTGRES_URL,
        DATABASE_POOL_MIN_SIZE="1",
        DATABASE_POOL_MAX_SIZE="5",
        DATABASE_POOL_TIMEOUT="7.5",
    )
    assert pooled == {
        "options": {"pool": {"min_size": 1, "max_size": 5, "timeout": 7.5}},
        "conn_max_age": 0,
    }
    assert database_settings(DATABASE_URL=POSTGRES_URL)["options"]["pool"] == {
        "min_size": 2,
        "max_size": 16,
        "timeout": 30.0,
    }


def test_the_pool_can_be_turned_off_for_persistent_connections():
    unpooled = database_settings(
        DATABASE_URL=POSTGRES_URL, DATABASE_POOL_MAX_SIZE="0", DATABASE_CONN_MAX_AGE="60"
    )
    assert unpooled == {"options": {}, "conn_max_age": 60}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_CONN_MAX_AGE": "60"}, "DATABASE_CONN_MAX_AGE cannot be used"),
        ({"DATABASE_POOL_MIN_SIZE": "9", "DATABASE_POOL_MAX_SIZE": "4"}, "must not exceed"),
        ({"DATABASE_POOL_TIMEOUT": "soon"}, "DATABASE_POOL_TIMEOUT must be a number"),
    ],
)
def test_pool_settings_that_cannot_work_are_refused_with_their_names(env, named):
    result = manage("check", DJANGO_SECRET_KEY="k", DATABASE_URL=POSTGRES_URL, **env)
    assert result.returncode != 0
    assert named in result.stderr


BURST = """
import json, threading
from django.db import connection
pids, errors = set(), []
def query():
    try:
        with connection.cursor() as cursor:
            cursor.execute("select pg_backend_pid(), pg_sleep(0.2)")
            pids.add(cursor.fetchone()[0])
    except Exception as error:
        errors.append(repr(error))
    finally:
        connection.close()  # back to the pool
threads = [threading.Thread(target=query) for _ in range(12)]
[thread.start() for thread in threads]
[thread.join() for thread in threads]
print(json.dumps({"pids": len(pids), "errors": errors}))
"""


def test_a_burst_larger_than_the_pool_waits_for_a_connection_instead_of_failing():
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://…")
    result = manage(
        "shell",
        "-c",
        BURST,
        DJANGO_SECRET_KEY="k",
        DATABASE_POOL_MIN_SIZE="1",
        DATABASE_POOL_MAX_SIZE="2",
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # Twelve threads, two connections: each thread waited its turn, none failed.
    assert outcome == {"pids": outcome["pids"], "errors": []}
    assert outcome["pids"] <= 2
