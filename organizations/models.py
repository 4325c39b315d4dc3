"""Organizations scope everything a user sees; members hold a role in each."""

from __future__ import annotations

import functools
import hashlib
import re
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models

# A host name (dot-separated labels), an IPv4 address or a bracketed IPv6 address.
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_PATTERN = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?|\[[0-9A-Fa-f:.]{{2,45}}\]")
SERVER_HOST_SCHEMES = ("http", "https", "ws", "wss")


def validate_server_host_url(value: str) -> None:
    """A host with an optional scheme (http, https, ws, wss) and port: `cams.example.org`,
    `wss://cams.example.org:8443`. No path, query, user or spaces: the browser builds the
    WebSocket URL from it, so anything else would end up in a broken (or misleading) URL."""
    if not value:
        return
    message = (
        "Give a host with an optional scheme (http, https, ws, wss) and port, such as "
        "cams.example.org or wss://cams.example.org:8443; no path, user or spaces."
    )
    rest = value
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme.lower() not in SERVER_HOST_SCHEMES:
            raise ValidationError(
                f"Unknown scheme {scheme[:20]!r}: use http, https, ws or wss.", code="invalid"
            )
    host, port = rest, ""
    if ":" in rest and not rest.endswith("]"):
        host, _, port = rest.rpartition(":")
        if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValidationError(
                f"The port must be a number from 1 to 65535. {message}", code="invalid"
            )
    if not host or len(host) > 253 or not _HOST_PATTERN.fullmatch(host):
        raise ValidationError(message, code="invalid")


SYSTEM_PROMPT_MAX_LENGTH = 4000


@functools.cache
def time_zone_names() -> tuple[str, ...]:
    """The IANA zone names this machine knows, sorted (read from disk once: it lists files)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def validate_time_zone(value: str) -> None:
    """An IANA time zone name such as Europe/Paris or America/New_York (blank: the server's)."""
    if not value:
        return
    message = (
        f"Unknown time zone {value[:60]!r}: give an IANA name such as Europe/Paris, "
        "America/New_York or UTC."
    )
    # zoneinfo also accepts paths like "../x" or absolute ones and reads files for them: only
    # names from the zone database itself are allowed.
    if value not in time_zone_names():
        raise ValidationError(message, code="invalid")


class Organization(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=120, unique=True)
    # Where the browser opens its WebSockets. Blank means "the host that served the page",
    # which is right for a single server; set it when WebSockets are served elsewhere.
    server_host_url = models.CharField(
        max_length=255,
        blank=True,
        validators=[validate_server_host_url],
        help_text="Host (optionally with scheme) the browser connects WebSockets to; blank = the page's own host.",
    )
    ws_port = models.PositiveIntegerField(
        default=7103,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Port of the WebSocket server, used together with server_host_url.",
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="IANA time zone (e.g. Europe/Paris) for times the assistant shows and the "
        "periods it counts (today, since 9:00); blank = the server's TIME_ZONE.",
    )
    system_prompt = models.TextField(
        max_length=SYSTEM_PROMPT_MAX_LENGTH,
        blank=True,
        # A TextField's max_length only sizes form widgets; the validator enforces it.
        validators=[MaxLengthValidator(SYSTEM_PROMPT_MAX_LENGTH)],
        help_text="Instructions the assistant follows in this organization's chats, after "
        "Sightline's own.",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        """The organization's time zone, or the server's when none is set."""
        return zoneinfo.ZoneInfo(self.time_zone or settings.TIME_ZONE)


class Membership(models.Model):
    class Role(models.TextChoices):
        # From the most to the least powerful; what each may do is in organizations.permissions.
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=80, blank=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise a token.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def digest_of(raw_token: str) -> str:
        return hashlib.sha256(raw_token.encode()).hexdigest()
