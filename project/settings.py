"""Sightline settings, read from the environment through small typed helpers.

Defaults serve a laptop (SQLite file, in-memory channel layer, cameras inside the daphne
process). `DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis with no code change.
Every variable is documented in README.md under "Configuration".
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(
    name: str, default: list[str]
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated networks like 10.0.0.0/8; got {item!r}"
            ) from None
    return networks


DEBUG = env_bool("DJANGO_DEBUG", False)

# The installation's own key file: `scripts/serve` writes it on first start, so that
# `manage.py changepassword` and friends work there without exporting anything.
INSTALLATION_SECRET_KEY_FILE = BASE_DIR / ".secret_key"


def secret_key_from_environment() -> str:
    """DJANGO_SECRET_KEY, else the file DJANGO_SECRET_KEY_FILE names (systemd credentials,
    Docker secrets), else this installation's `.secret_key`; "" when there is none."""
    if key := env_str("DJANGO_SECRET_KEY"):
        return key
    if named := env_str("DJANGO_SECRET_KEY_FILE"):
        try:
            key = Path(named).read_text().strip()
        except OSError as error:
            raise ImproperlyConfigured(
                f"DJANGO_SECRET_KEY_FILE={named!r} cannot be read: {error.strerror}."
            ) from None
        if not key:
            raise ImproperlyConfigured(f"DJANGO_SECRET_KEY_FILE={named!r} is empty.")
        return key
    if INSTALLATION_SECRET_KEY_FILE.is_file():
        return INSTALLATION_SECRET_KEY_FILE.read_text().strip()
    return ""


SECRET_KEY = secret_key_from_environment()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "No secret key: set DJANGO_SECRET_KEY to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or "
            "DJANGO_SECRET_KEY_FILE to a file holding one, or run scripts/serve once (it writes "
            f"{INSTALLATION_SECRET_KEY_FILE}); DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "project",
    "organizations",
    "chats",
    "cameras",
    "events",
    "notifications",
]

MIDDLEWARE = [
    # First: REMOTE_ADDR becomes the client's address (through DJANGO_TRUSTED_PROXIES only).
    "project.client_address.ClientAddressMiddleware",
    "project.inline_middleware.SecurityMiddleware",
    # NUL or a lone surrogate in the URL: 400 before a view uses it in a lookup.
    "project.text_input.unstorable_text_middleware",
    # Async-only (ServeStatic, a WhiteNoise fork): a sync middleware here would move every
    # request, the SSE streams too, through a worker thread and back.
    "servestatic.middleware.ServeStaticMiddleware",
    # Django's own, with hooks that run on the event loop (project/inline_middleware.py).
    "project.inline_middleware.SessionMiddleware",
    "project.inline_middleware.CommonMiddleware",
    "project.inline_middleware.CsrfViewMiddleware",
    "project.inline_middleware.AuthenticationMiddleware",
    "project.inline_middleware.MessageMiddleware",
    "project.inline_middleware.XFrameOptionsMiddleware",
    # Redis away while a view needed it: 503 with Retry-After (JSON on the API), not a 500.
    "project.unavailable.ServiceUnavailableMiddleware",
]

# Django's deploy checks look for its security middlewares by path and miss ours (the same
# classes, see project/inline_middleware.py); project/checks.py runs them with ours instead.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"
# How many HTTP requests one process handles at once up to the start of their response (the
# rest wait on the event loop; open streams do not count): see project/request_admission.py.
# Few keep the loop, which carries the camera frames, responsive under load; 0 = no limit.
REQUEST_CONCURRENCY = env_int("REQUEST_CONCURRENCY", 4, minimum=0)
# Long-lived threads that HTTP requests take in turn for Django's sync work (sync views, signals,
# sync_to_async): see project/request_threads.py. More than REQUEST_CONCURRENCY, so the requests
# being set up rarely share one.
REQUEST_THREADS = env_int("REQUEST_THREADS", 8, minimum=1)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'sightline.sqlite3'}")
# SQLite keeps each thread's connection for a minute (opening one, with its PRAGMAs, was ~9 % of
# a reply's CPU under load); PostgreSQL uses the pool below instead.
DATABASES = {
    "default": dj_database_url.parse(
        _database_url,
        conn_max_age=env_int(
            "DATABASE_CONN_MAX_AGE", 60 if _database_url.startswith("sqlite") else 0, minimum=0
        ),
    )
}
# PostgreSQL: a pool of connections per process (psycopg_pool), so hundreds of concurrent
# replies share a few connections instead of opening one each (that exhausted max_connections
# 100 at 200 concurrent prompts) and no query pays for a connection's setup. A thread that
# finds every connection busy waits up to DATABASE_POOL_TIMEOUT seconds for one, so a burst
# queues instead of failing. The default size covers the threads that query at once (the loop's
# executor, the runs' worker, the requests being admitted; see REQUEST_CONCURRENCY), well under
# PostgreSQL's default max_connections of 100 with several processes. 0 turns the pool off.
DATABASE_POOL_MIN_SIZE = env_int("DATABASE_POOL_MIN_SIZE", 2, minimum=0)
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 16, minimum=0)
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 30.0, minimum=0.1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_MAX_SIZE:
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured(
            "DATABASE_CONN_MAX_AGE cannot be used with the PostgreSQL connection pool: "
            "leave it unset, or set DATABASE_POOL_MAX_SIZE=0 to use persistent connections."
        )
    if DATABASE_POOL_MIN_SIZE > DATABASE_POOL_MAX_SIZE:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MIN_SIZE ({DATABASE_POOL_MIN_SIZE}) must not exceed "
            f"DATABASE_POOL_MAX_SIZE ({DATABASE_POOL_MAX_SIZE})."
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN_SIZE,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Capture workers, generation runs and requests write from several threads at once:
    # WAL and a busy timeout keep SQLite from answering "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so a live daphne started by the browser tests can open the test
    # database too; one per process, so parallel test runs do not share it.
    DATABASES["default"]["TEST"] = {"NAME": f"/tmp/sightline-test-{os.getpid()}.sqlite3"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every Redis timeout is set here, never left to redis-py's defaults (redis-py 8 made 5 s the
# default socket timeout). channels-redis waits for messages with a blocking BZPOPMIN of 5 s
# (RedisChannelLayer.brpop_timeout): the layer's socket timeout must outlast it, or a channel
# that stays silent for 5 s raises TimeoutError. Options in REDIS_URL's query string
# (`?socket_timeout=…`) take precedence over these.
_REDIS_LAYER_OPTIONS = {
    "socket_timeout": 10,
    "socket_connect_timeout": 3,
    "socket_keepalive": True,
    "health_check_interval": 30,
}
# Cache calls are single quick commands made while a request waits: fail fast, so a request
# that needs Redis answers 503 within seconds while it is away.
_REDIS_CACHE_OPTIONS = {
    "socket_timeout": 3,
    "socket_connect_timeout": 2,
    "socket_keepalive": True,
    "health_check_interval": 30,
}


def redis_channel_layers(url: str) -> dict:
    """CHANNEL_LAYERS on the Redis at `url` (also what tests use for a Redis of their own)."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": url, **_REDIS_LAYER_OPTIONS}],
                "capacity": 200,
                "expiry": 30,
            },
        }
    }


def redis_caches(url: str) -> dict:
    """CACHES on the Redis at `url`."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "sightline",
            "OPTIONS": dict(_REDIS_CACHE_OPTIONS),
        }
    }


REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = redis_channel_layers(REDIS_URL)
    CACHES = redis_caches(REDIS_URL)
else:
    # channels' in-memory layer, but scanning for expired messages once a second rather than
    # on every message (project/channel_layer.py).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "project.channel_layer.InMemoryLayerWithPeriodicExpiry",
            "CONFIG": {"capacity": 200},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# With an in-memory channel layer only this process can see the frames, so the capture
# workers must live inside the daphne process. With Redis they belong in `runcameras`.
CAMERAS_IN_PROCESS = env_bool("CAMERAS_IN_PROCESS", not REDIS_URL)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the app folders too, so `scripts/serve` needs no collectstatic,
# and from STATIC_ROOT with its compressed variants once collectstatic filled it.
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_USE_STATIC_ROOT = True
SERVESTATIC_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "organizations.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, with size and depth limits checked before parsing (project/json_input.py).
    "DEFAULT_PARSER_CLASSES": ["project.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "project.api_errors.json_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Throttles key on REMOTE_ADDR, which ClientAddressMiddleware already set to the client's
    # address; DRF must not read X-Forwarded-For again on its own.
    "NUM_PROXIES": 0,
    # The API's contract (project/openapi.py): JSON first, so curl and clients get JSON; a
    # browser (Accept: text/html) gets DRF's browsable API, usable with the session.
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "project.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "project.openapi.AutoSchema",
}

# The OpenAPI schema at /api/v1/schema, Swagger UI at /api/v1/docs and ReDoc at
# /api/v1/redoc, served from the sidecar package's static files (no CDN).
SPECTACULAR_SETTINGS = {
    "TITLE": "Sightline API",
    "DESCRIPTION": (
        "Cameras, detection events and an assistant that answers from them. Authenticate with "
        "`Authorization: Bearer <token>` (POST /api/v1/auth/token, or the Tokens page), or with "
        "the session of a logged-in browser plus its CSRF token. Every error is "
        '`{"error", "code", "fields"?}`; every list is `{"count", "next", "previous", '
        '"results"}` paged with `limit` and `offset`.'
    ),
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["project.openapi.add_plain_views"],
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
    },
}

# JSON request bodies (API, chat stream): the largest accepted (413 above it) and how deep its
# arrays and objects may nest (400 above it), both checked before the body is parsed.
API_JSON_MAX_BYTES = env_int("API_JSON_MAX_BYTES", 1024 * 1024, minimum=1024)
API_JSON_MAX_DEPTH = env_int("API_JSON_MAX_DEPTH", 32, minimum=2)

# The assistant. `builtin` answers offline from the organization's own data; `openai` talks
# to any OpenAI-compatible chat-completions server.
ASSISTANT_BACKEND = env_str("ASSISTANT_BACKEND", "builtin")
if ASSISTANT_BACKEND not in {"builtin", "openai"}:
    raise ImproperlyConfigured(
        f"ASSISTANT_BACKEND must be 'builtin' or 'openai'; got {ASSISTANT_BACKEND!r}"
    )
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
ASSISTANT_MODEL = env_str("ASSISTANT_MODEL", "gpt-4o-mini")
ASSISTANT_CONNECT_TIMEOUT = env_float("ASSISTANT_CONNECT_TIMEOUT", 10.0, minimum=0.1)
ASSISTANT_IDLE_TIMEOUT = env_float("ASSISTANT_IDLE_TIMEOUT", 60.0, minimum=0.1)
# How long the server's model list (GET {OPENAI_BASE_URL}/models) is reused; 0 asks every time.
ASSISTANT_MODELS_CACHE_SECONDS = env_int("ASSISTANT_MODELS_CACHE_SECONDS", 60, minimum=0)
# Pause between the builtin backend's pieces, so replies visibly stream; 0 in benchmarks.
ASSISTANT_BUILTIN_DELAY_MS = env_int("ASSISTANT_BUILTIN_DELAY_MS", 15, minimum=0)

CHAT_PROMPT_MAX_CHARS = env_int("CHAT_PROMPT_MAX_CHARS", 8000, minimum=1)
CHAT_RATE_LIMIT_PER_MINUTE = env_int("CHAT_RATE_LIMIT_PER_MINUTE", 30, minimum=1)
SSE_KEEPALIVE_SECONDS = env_float("SSE_KEEPALIVE_SECONDS", 15.0, minimum=0.05)
# Open WebSockets and SSE streams close at once when their access is revoked (a broadcast);
# should that be missed, a re-check of the database this often ends them (README "Revoked access").
ACCESS_RECHECK_SECONDS = env_float("ACCESS_RECHECK_SECONDS", 30.0, minimum=0.1)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# HTTPS in production (README "Deployment"): all off by default, since `scripts/serve` speaks
# plain HTTP on a laptop. Behind a TLS-terminating proxy that sets X-Forwarded-Proto, turn on
# DJANGO_SECURE_PROXY_SSL_HEADER so Django knows a request came over HTTPS; only then is the
# redirect safe (without it every request would look like HTTP and redirect forever).
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)

# --- chats settings (see README "Configuration") ---
# How often each daphne process marks replies whose run stopped heartbeating as failed.
CHAT_STALE_SWEEP_SECONDS = env_float("CHAT_STALE_SWEEP_SECONDS", 10.0, minimum=0.05)

# --- cameras settings ---
# Ingest: the largest request body accepted by POST /api/v1/actions/actions/send (413 above it),
# and how many new frames a second one push: camera may receive (429 above it).
CAMERA_INGEST_MAX_BYTES = env_int("CAMERA_INGEST_MAX_BYTES", 2 * 1024 * 1024, minimum=1024)
CAMERA_INGEST_MAX_FRAMES_PER_SECOND = env_int("CAMERA_INGEST_MAX_FRAMES_PER_SECOND", 30, minimum=1)
# How far ahead of the server's clock an ingested frame's timestamp may be (400 beyond it): the
# sender's clock may run a little fast, but a frame dated later records events not yet happened.
CAMERA_INGEST_MAX_FUTURE_SECONDS = env_float("CAMERA_INGEST_MAX_FUTURE_SECONDS", 5.0, minimum=0.0)
# How long a published frame's timestamp is remembered, so a frame forwarded back by a seed
# client is answered as a duplicate instead of being broadcast again.
CAMERA_FRAME_RECORD_SECONDS = env_int("CAMERA_FRAME_RECORD_SECONDS", 120, minimum=5)
# A camera without a frame for this long is marked offline (its last frame is kept).
CAMERA_OFFLINE_AFTER_SECONDS = env_float("CAMERA_OFFLINE_AFTER_SECONDS", 10.0, minimum=1.0)
# How often the capture supervisor re-reads the cameras table for added/changed/removed cameras.
CAMERA_RELOAD_SECONDS = env_float("CAMERA_RELOAD_SECONDS", 3.0, minimum=0.1)
# With REDIS_URL, each camera is read by the one capture process holding its lease (cameras/
# leases.py), renewed every fifth of this: a process that dies hands its cameras to the others
# within a lease and a renewal (12 s by default); a shorter lease hands over sooner but makes a
# Redis outage stop capture sooner too (the cameras stop once their lease could have expired).
CAMERA_LEASE_SECONDS = env_float("CAMERA_LEASE_SECONDS", 10.0, minimum=1.0)
# `manage.py runcameras` serves its own Prometheus metrics on 127.0.0.1 at this port (0 = off).
CAMERA_METRICS_PORT = env_int("CAMERA_METRICS_PORT", 0, minimum=0)
# The player's steady retry period once its first five tries (1, 2, 4, 8, 16 s) have failed: it
# keeps trying this often for as long as the page is visible.
CAMERA_PLAYER_RETRY_SECONDS = env_float("CAMERA_PLAYER_RETRY_SECONDS", 30.0, minimum=1.0)
# Test source (the camera form's button): how long a test waits for one frame, and how many
# tests each user may run a minute (each one makes the server connect where they asked).
CAMERA_SOURCE_TEST_TIMEOUT_SECONDS = env_float(
    "CAMERA_SOURCE_TEST_TIMEOUT_SECONDS", 5.0, minimum=0.5
)
CAMERA_SOURCE_TESTS_PER_MINUTE = env_int("CAMERA_SOURCE_TESTS_PER_MINUTE", 10, minimum=1)
# H.264 live video (`?format=h264`, see cameras/video_track.py): encoded once per camera while
# someone watches it so. The rate cap bounds each viewer's link (VBV, kbit/s); the quality is
# libx264's CRF (lower is better and bigger; 25 stays above JPEG quality 75's SSIM on the demo
# scene at a tenth of its bytes); a key frame comes at least this often, and when a viewer needs one.
VIDEO_MAX_KBPS = env_int("VIDEO_MAX_KBPS", 1500, minimum=100)
VIDEO_CRF = env_int("VIDEO_CRF", 25, minimum=0)
if VIDEO_CRF > 51:
    raise ImproperlyConfigured(f"VIDEO_CRF must be from 0 to 51 (libx264's scale); got {VIDEO_CRF}")
VIDEO_KEYFRAME_SECONDS = env_float("VIDEO_KEYFRAME_SECONDS", 1.0, minimum=0.2)


# --- camera source policy (README "Camera sources") ---
# What a camera's source and ONNX model may reach on this server. Files: only inside these
# folders (colon- or comma-separated absolute paths; symlinks are resolved before the check).
# Devices (`device:N`): only when allowed. Network sources: only to globally routable addresses,
# plus the networks listed here (e.g. the cameras' LAN, 192.168.1.0/24), checked at every connect.
def env_paths(name: str, default: list[Path]) -> list[Path]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    paths = [Path(item.strip()) for item in raw.replace(",", ":").split(":") if item.strip()]
    relative = [str(path) for path in paths if not path.is_absolute()]
    if relative:
        raise ImproperlyConfigured(f"{name} must list absolute paths; got {', '.join(relative)}")
    return paths


# Not MEDIA_ROOT itself: it holds every organization's event snapshots, which a camera source
# must not read. The folder is not created; until an operator puts videos there, no file opens.
CAMERA_FILE_ROOTS = env_paths("CAMERA_FILE_ROOTS", [MEDIA_ROOT / "videos"])
CAMERA_ALLOW_DEVICES = env_bool("CAMERA_ALLOW_DEVICES", False)
CAMERA_ALLOWED_NETWORKS = env_networks("CAMERA_ALLOWED_NETWORKS", [])
# An object its detector misses for at most this long (hidden behind another, a few missed
# frames) keeps its track id, and so its event (see cameras/vision/tracking.py).
TRACK_LOST_SECONDS = env_float("TRACK_LOST_SECONDS", 2.0, minimum=0.0)
# An object is shown and recorded once detected this many times: one-off false positives never are.
TRACK_MIN_HITS = env_int("TRACK_MIN_HITS", 3, minimum=1)

# --- events settings ---
# Detection events (see events/tracking.py for the rules). A tracked object (or, for motion, the
# camera's motion) missing for at most EVENT_GAP_SECONDS and then seen again continues its event.
EVENTS_RECORDING = env_bool("EVENTS_RECORDING", True)
EVENT_GAP_SECONDS = env_float("EVENT_GAP_SECONDS", 2.0, minimum=0.0)
# A presence longer than this is cut into consecutive events (0 = never cut).
EVENT_MAX_SECONDS = env_float("EVENT_MAX_SECONDS", 60.0, minimum=0.0)
# How often the recorder writes what changed (events close and sessions end sooner).
EVENTS_FLUSH_SECONDS = env_float("EVENTS_FLUSH_SECONDS", 1.0, minimum=0.05)
# A camera session ends when its worker stops or after this long without a frame.
EVENTS_SESSION_IDLE_SECONDS = env_float("EVENTS_SESSION_IDLE_SECONDS", 10.0, minimum=1.0)
# `manage.py prune_events` deletes events and sessions older than this, with their snapshots.
EVENTS_RETENTION_DAYS = env_int("EVENTS_RETENTION_DAYS", 30, minimum=1)
# Each tracked object's event gets a clip (events/clips.py): H.264 MP4 from CLIP_PRE_SECONDS
# before it started to CLIP_POST_SECONDS after it ended, at most CLIP_FPS frames a second, kept
# under MEDIA_ROOT/clips. Pre-roll comes from a per-camera ring of recent JPEG frames, bounded by
# CLIP_BUFFER_SECONDS and CLIP_BUFFER_MB (an event longer than the ring gets a clip of its end).
EVENT_CLIPS = env_bool("EVENT_CLIPS", True)
CLIP_PRE_SECONDS = env_float("CLIP_PRE_SECONDS", 3.0, minimum=0.0)
CLIP_POST_SECONDS = env_float("CLIP_POST_SECONDS", 3.0, minimum=0.0)
CLIP_FPS = env_float("CLIP_FPS", 10.0, minimum=1.0)
CLIP_BUFFER_SECONDS = env_float("CLIP_BUFFER_SECONDS", 75.0, minimum=1.0)
CLIP_BUFFER_MB = env_int("CLIP_BUFFER_MB", 48, minimum=1)
# The disk all clips may take together (10^9 bytes); past it the oldest clips are deleted first
# (their events stay). Checked after every clip written and by prune_events.
RECORDINGS_MAX_GB = env_float("RECORDINGS_MAX_GB", 20.0, minimum=0.001)

# --- notifications settings (README "Notifications") ---
# The address people reach Sightline at (e.g. https://nvr.example.com): links in webhooks and MQTT
# messages are made absolute with it. Empty: links are paths.
PUBLIC_URL = env_str("PUBLIC_URL").rstrip("/")
# Webhooks: each POST must answer within WEBHOOK_TIMEOUT_SECONDS; a failed one is retried with
# exponential backoff (WEBHOOK_RETRY_FIRST_SECONDS, doubling, at most an hour apart) until
# WEBHOOK_RETRY_PERIOD_SECONDS after the alert, then given up. Webhook URLs obey the camera
# sources' network policy, with their own allowance: WEBHOOK_ALLOWED_NETWORKS.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
WEBHOOK_RETRY_FIRST_SECONDS = env_float("WEBHOOK_RETRY_FIRST_SECONDS", 10.0, minimum=0.01)
WEBHOOK_RETRY_PERIOD_SECONDS = env_float("WEBHOOK_RETRY_PERIOD_SECONDS", 86400.0, minimum=0.0)
WEBHOOK_ALLOWED_NETWORKS = env_networks("WEBHOOK_ALLOWED_NETWORKS", [])
# How often a delivery worker looks for due deliveries it was not woken up for (another process
# wrote them).
WEBHOOK_POLL_SECONDS = env_float("WEBHOOK_POLL_SECONDS", 1.0, minimum=0.05)
# "Send test" presses per user a minute (the pages and POST /api/v1/webhooks/<id>/test).
WEBHOOK_TESTS_PER_MINUTE = env_int("WEBHOOK_TESTS_PER_MINUTE", 10, minimum=1)
# MQTT (notifications/mqtt.py): off unless MQTT_URL is set, e.g. mqtt://user:pass@broker:1883.
# Messages wait in a queue of MQTT_QUEUE_MAX while the broker is away; past it the oldest are
# dropped and counted (sightline_mqtt_dropped_total).
MQTT_URL = env_str("MQTT_URL")
MQTT_TOPIC_PREFIX = env_str("MQTT_TOPIC_PREFIX", "sightline").strip("/")
MQTT_DISCOVERY_PREFIX = env_str("MQTT_DISCOVERY_PREFIX", "homeassistant").strip("/")
MQTT_QUEUE_MAX = env_int("MQTT_QUEUE_MAX", 10000, minimum=1)

# --- health and metrics ---
# GET /metrics answers a request with `Authorization: Bearer <METRICS_TOKEN>` (when set), or from
# an address in METRICS_ALLOWED_NETWORKS that came through no proxy; 401/403 otherwise.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS", ["127.0.0.1/32", "::1/128"])
# Each /readyz check (database, channel layer, cache, heartbeats) must answer within this.
READYZ_CHECK_TIMEOUT_SECONDS = env_float("READYZ_CHECK_TIMEOUT_SECONDS", 2.0, minimum=0.1)

# --- client address and log-in limits (README "Configuration" and "Deployment") ---
# Proxies whose forwarding header names the client (comma-separated addresses or networks,
# e.g. 127.0.0.1 behind nginx on this machine; `unix` for a proxy reaching daphne through a Unix
# socket, where the peer has no address). Empty: the direct peer is the client, and every
# X-Forwarded-For / X-Real-IP / Forwarded a client sends is ignored.
_trusted_proxies = env_list("DJANGO_TRUSTED_PROXIES", [])
TRUSTED_PROXY_UNIX_SOCKET = "unix" in _trusted_proxies
TRUSTED_PROXIES = []
for _proxy in _trusted_proxies:
    if _proxy == "unix":
        continue
    try:
        TRUSTED_PROXIES.append(ipaddress.ip_network(_proxy, strict=False))
    except ValueError:
        raise ImproperlyConfigured(
            "DJANGO_TRUSTED_PROXIES must be comma-separated addresses or networks like "
            f"127.0.0.1 or 10.0.0.0/8 (or unix); got {_proxy!r}"
        ) from None
# The one header those proxies set; the others are ignored, since a proxy passes on whatever
# else a client sent.
TRUSTED_PROXY_HEADER = env_str("DJANGO_TRUSTED_PROXY_HEADER", "X-Forwarded-For")
if TRUSTED_PROXY_HEADER not in {"X-Forwarded-For", "X-Real-IP", "Forwarded"}:
    raise ImproperlyConfigured(
        "DJANGO_TRUSTED_PROXY_HEADER must be X-Forwarded-For, X-Real-IP or Forwarded; "
        f"got {TRUSTED_PROXY_HEADER!r}"
    )
# Password guessing (project/login_limits.py): failed log-ins within the window lock the
# username, or the client address, for LOGIN_LOCKOUT_SECONDS.
AUTHENTICATION_BACKENDS = ["project.login_limits.RateLimitedModelBackend"]
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 10, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 50, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
