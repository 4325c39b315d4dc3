"""`check --deploy` sees our inline middlewares as Django's own (project/checks.py)."""

from __future__ import annotations

from collections import Counter

from django.core import checks

INLINE_SECURITY = "project.inline_middleware.SecurityMiddleware"


def _deploy_check_ids() -> Counter:
    found = checks.run_checks(tags=[checks.Tags.security], include_deployment_checks=True)
    return Counter(message.id for message in found if not message.is_silenced())


def test_checks_that_need_the_security_middlewares_still_run(settings):
    settings.SECURE_HSTS_SECONDS = 0
    settings.CSRF_COOKIE_SECURE = False
    settings.X_FRAME_OPTIONS = "SAMEORIGIN"
    ids = _deploy_check_ids()
    # Each depends on a middleware being installed: Django alone would skip them here.
    assert ids["security.W004"] == 1
    assert ids["security.W016"] == 1
    assert ids["security.W019"] == 1
    assert not {"security.W001", "security.W002", "security.W003"} & set(ids)


def test_a_missing_security_middleware_is_still_reported(settings):
    settings.MIDDLEWARE = [path for path in settings.MIDDLEWARE if path != INLINE_SECURITY]
    settings.SECURE_HSTS_SECONDS = 0
    ids = _deploy_check_ids()
    assert ids["project.W001"] == 1
    assert "security.W004" not in ids  # HSTS needs the middleware: nothing to say about it


def test_with_djangos_own_middlewares_nothing_is_reported_twice(settings):
    settings.MIDDLEWARE = [
        path.replace(
            "project.inline_middleware.SecurityMiddleware",
            "django.middleware.security.SecurityMiddleware",
        )
        for path in settings.MIDDLEWARE
    ]
    settings.SILENCED_SYSTEM_CHECKS = []
    settings.SECURE_HSTS_SECONDS = 0
    ids = _deploy_check_ids()
    assert ids["security.W004"] == 1
