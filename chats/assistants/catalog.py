"""Which models a chat may use: the assistant server's list, cached, the check of a chat's
choice against it, and the backend that answers with a chat's model.

With ASSISTANT_BACKEND=openai the list is what the server answers to GET {OPENAI_BASE_URL}/models,
kept ASSISTANT_MODELS_CACHE_SECONDS in the Django cache (one fetch for every process when the
cache is Redis). The builtin backend is one model, "builtin". A server that cannot be asked never
fails the caller: the default model is still offered, with the reason in `error`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from chats.assistants.base import AssistantError, Backend
from chats.assistants.builtin import BuiltinBackend
from chats.assistants.openai_compatible import OpenAICompatibleBackend
from project.text_input import UnstorableText, text_storable_check, unstorable_character

logger = logging.getLogger(__name__)

BUILTIN_MODEL = "builtin"
MODEL_NAME_MAX_CHARS = 200  # Chat.model's max_length
# A failed fetch is tried again sooner than a list is refreshed: a fix (the server started, the
# key set) shows within seconds, yet a server that is down does not cost every request a timeout.
FAILURE_CACHE_SECONDS = 10
# How many names an "unknown model" error spells out; the rest are counted.
NAMES_IN_AN_ERROR = 20


@dataclass(frozen=True)
class ModelCatalog:
    backend: str  # "openai" or "builtin"
    default: str  # what a chat with a blank `model` is answered with
    models: tuple[str, ...]  # the default among them
    error: str | None = None  # why the server's list is missing, in a sentence


class ModelChoiceError(ValueError):
    """A model name a chat cannot use; the message says why, for the person who chose it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _openai_backend(model: str) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,
        model=model,
        connect_timeout=settings.ASSISTANT_CONNECT_TIMEOUT,
        idle_timeout=settings.ASSISTANT_IDLE_TIMEOUT,
    )


def _cache_key() -> str:
    # Another server or key is another list (the cache may outlive a configuration change).
    identity = f"{settings.OPENAI_BASE_URL}\n{settings.OPENAI_API_KEY}".encode()
    return "assistant_models:" + hashlib.sha256(identity).hexdigest()[:32]


def _storable_name(model: str) -> bool:
    return len(model) <= MODEL_NAME_MAX_CHARS and unstorable_character(model) is None


def _server_models() -> tuple[list[str], str | None]:
    """The server's model ids (those a chat can store) and None, or [] and why not."""
    key = _cache_key()
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        listed = _openai_backend(settings.ASSISTANT_MODEL).list_models()
    except AssistantError as exc:
        logger.warning("The assistant server's model list is unavailable: %s", exc)
        result: tuple[list[str], str | None] = ([], str(exc))
        seconds = min(FAILURE_CACHE_SECONDS, settings.ASSISTANT_MODELS_CACHE_SECONDS)
    else:
        result = ([model for model in listed if _storable_name(model)], None)
        seconds = settings.ASSISTANT_MODELS_CACHE_SECONDS
    if seconds > 0:
        cache.set(key, result, seconds)
    return result


def models_available() -> ModelCatalog:
    """The models a chat may choose. Blocking (an HTTP request when the cache holds no list):
    call it from sync code (the API views), never on the event loop."""
    if settings.ASSISTANT_BACKEND != "openai":
        return ModelCatalog(backend="builtin", default=BUILTIN_MODEL, models=(BUILTIN_MODEL,))
    listed, error = _server_models()
    default = settings.ASSISTANT_MODEL
    # The configured default is offered even when the server does not list it: it is what chats
    # were answered with before they could choose, and servers accept aliases they do not list
    # (Ollama's "llama3" for "llama3:latest").
    models = tuple(sorted({*listed, default}, key=lambda name: (name.lower(), name)))
    return ModelCatalog(backend="openai", default=default, models=models, error=error)


def _names(models: tuple[str, ...]) -> str:
    named = ", ".join(models[:NAMES_IN_AN_ERROR])
    rest = len(models) - NAMES_IN_AN_ERROR
    return f"{named} and {rest} more (GET /api/v1/models lists them)" if rest > 0 else named


def chat_model_clean(model: object) -> str:
    """The model name to store on a chat ("" for the default), or ModelChoiceError."""
    if model is None:
        return ""
    if not isinstance(model, str):
        raise ModelChoiceError("The model must be a string: an id from GET /api/v1/models.")
    name = model.strip()
    if not name:
        return ""
    try:
        text_storable_check(name, field="The model name")
    except UnstorableText as refused:
        raise ModelChoiceError(refused.message) from None
    if len(name) > MODEL_NAME_MAX_CHARS:
        raise ModelChoiceError(f"The model name is longer than {MODEL_NAME_MAX_CHARS} characters.")
    catalog = models_available()
    if catalog.error is not None:
        # The server could not be asked just now. Refusing every name would lock people out of
        # models they know it serves until it answers again; a wrong name costs one reply, which
        # fails with the server's own words.
        return name
    if name not in catalog.models:
        raise ModelChoiceError(
            f"There is no model {name!r} on the assistant server; the available models are: "
            f"{_names(catalog.models)}."
        )
    return name


def backend_for_model(model: str) -> Backend:
    """The backend that answers a chat whose `model` field is `model` ("" for the default)."""
    if settings.ASSISTANT_BACKEND != "openai":
        return BuiltinBackend(delay_seconds=settings.ASSISTANT_BUILTIN_DELAY_MS / 1000)
    # "builtin" was the only choice while the builtin backend was configured; such a chat now
    # gets the server's default rather than a reply that fails on an unknown model.
    if not model or model == BUILTIN_MODEL:
        model = settings.ASSISTANT_MODEL
    return _openai_backend(model)
