"""Settings as an operator meets them: manage.py without exporting the key, and a deployment
checklist (`check --deploy`) that the documented settings make clean."""

from __future__ import annotations

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
