"""System checks of the project as a whole.

Django's deploy checks find its security middlewares by their dotted paths, so with ours from
`project.inline_middleware` (the same classes, with hooks on the event loop) they would report
SecurityMiddleware, XFrameOptionsMiddleware and CsrfViewMiddleware missing (security.W001-W003,
silenced in settings) and then skip every check that depends on them (HSTS, SSL redirect,
X-Frame-Options DENY, secure CSRF cookie…). Here those checks run again with our classes named
as Django's, so `check --deploy` says what it would say with Django's own.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.core.checks.security import base, csrf
from django.test.utils import override_settings

# Ours → Django's, for the checks below.
INLINE_MIDDLEWARE_AS_DJANGO = {
    "project.inline_middleware.SecurityMiddleware": "django.middleware.security.SecurityMiddleware",
    "project.inline_middleware.XFrameOptionsMiddleware": (
        "django.middleware.clickjacking.XFrameOptionsMiddleware"
    ),
    "project.inline_middleware.CsrfViewMiddleware": "django.middleware.csrf.CsrfViewMiddleware",
}
# Django's checks that read which of those middlewares are installed.
MIDDLEWARE_DEPENDENT_CHECKS = (
    base.check_security_middleware,
    base.check_xframe_options_middleware,
    csrf.check_csrf_middleware,
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    csrf.check_csrf_cookie_secure,
)
# What settings silence (Django's own run of them is wrong with our classes) and the ids this
# check reports them under instead, when the middleware really is missing.
SILENCED_FOR_INLINE_MIDDLEWARE = {
    "security.W001": "project.W001",
    "security.W002": "project.W002",
    "security.W003": "project.W003",
}


@register(Tags.security, deploy=True)
def security_checks_with_inline_middleware(app_configs, **kwargs):
    middleware = [INLINE_MIDDLEWARE_AS_DJANGO.get(path, path) for path in settings.MIDDLEWARE]
    with override_settings(MIDDLEWARE=middleware):
        found = _run(MIDDLEWARE_DEPENDENT_CHECKS)
    # What Django's own run reports already (a check about a middleware that is Django's).
    reported = {message.id for message in _run(MIDDLEWARE_DEPENDENT_CHECKS)}
    return [
        Warning(message.msg, hint=message.hint, id=SILENCED_FOR_INLINE_MIDDLEWARE[message.id])
        if message.id in SILENCED_FOR_INLINE_MIDDLEWARE
        else message
        for message in found
        if message.id in SILENCED_FOR_INLINE_MIDDLEWARE or message.id not in reported
    ]


def _run(check_functions) -> list:
    return [message for check in check_functions for message in check(None)]
