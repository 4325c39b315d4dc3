"""The models a chat can use: the assistant server's list (a real OpenAI-compatible server on
127.0.0.1), its cache, its failures, GET /api/v1/models, and a chat's choice on POST/PATCH."""

from __future__ import annotations

import re
import socket

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chats.assistants import Turn
from chats.assistants.builtin import BuiltinBackend
from chats.assistants.catalog import (
    ModelChoiceError,
    backend_for_model,
    chat_model_clean,
    models_available,
)
from chats.assistants.openai_compatible import MODEL_LIST_MAX_BYTES, OpenAICompatibleBackend
from chats.model_choice import chat_model_set
from chats.models import Chat
from chats.services import chat_create
from tests.chats.fake_openai import reply
from tests.chats.test_assistants import CONTEXT

pytestmark = pytest.mark.django_db


@pytest.fixture
def openai_settings(settings, fake_openai):
    settings.ASSISTANT_BACKEND = "openai"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_API_KEY = "sk-test"
    settings.ASSISTANT_MODEL = "llama3"
    settings.ASSISTANT_CONNECT_TIMEOUT = 2.0
    settings.ASSISTANT_MODELS_CACHE_SECONDS = 60
    fake_openai.models = ["qwen2.5", "llama3", "Mistral-7B"]
    return settings


@pytest.fixture
def server_down(openai_settings):
    # A port nothing listens on: bound, then closed, so the connection is refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    openai_settings.OPENAI_BASE_URL = f"http://127.0.0.1:{port}/v1"
    return openai_settings


def _model_fetches(fake) -> int:
    return sum(1 for request in fake.requests if request["path"] == "/v1/models")


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization, title="Night shift")


# The catalog


def test_the_builtin_backend_is_one_model(settings):
    settings.ASSISTANT_BACKEND = "builtin"
    catalog = models_available()
    assert (catalog.backend, catalog.default, catalog.models, catalog.error) == (
        "builtin",
        "builtin",
        ("builtin",),
        None,
    )


def test_it_lists_the_servers_models_sorted_with_the_key(openai_settings, fake_openai):
    catalog = models_available()
    assert catalog.backend == "openai"
    assert catalog.default == "llama3"
    assert catalog.models == ("llama3", "Mistral-7B", "qwen2.5")
    assert catalog.error is None
    [request] = fake_openai.requests
    assert (request["method"], request["path"]) == ("GET", "/v1/models")
    assert request["headers"]["Authorization"] == "Bearer sk-test"


def test_the_default_is_offered_even_when_the_server_does_not_list_it(openai_settings, fake_openai):
    fake_openai.models = ["qwen2.5"]
    assert models_available().models == ("llama3", "qwen2.5")


def test_ids_a_chat_cannot_store_are_left_out(openai_settings, fake_openai):
    fake_openai.models = ["qwen2.5", "x" * 201, "bad\x00name", "qwen2.5"]
    assert models_available().models == ("llama3", "qwen2.5")


def test_the_list_is_cached_so_a_second_call_does_not_ask_the_server(openai_settings, fake_openai):
    first = models_available()
    fake_openai.models = ["something-new"]
    assert models_available() == first
    assert _model_fetches(fake_openai) == 1


def test_a_cache_time_of_zero_asks_every_time(openai_settings, fake_openai):
    openai_settings.ASSISTANT_MODELS_CACHE_SECONDS = 0
    models_available()
    fake_openai.models = ["something-new"]
    assert "something-new" in models_available().models
    assert _model_fetches(fake_openai) == 2


def test_another_server_is_another_list(openai_settings, fake_openai):
    models_available()
    openai_settings.OPENAI_API_KEY = "sk-other"
    models_available()
    assert _model_fetches(fake_openai) == 2


def test_a_server_that_is_down_leaves_the_default_with_the_reason(server_down):
    catalog = models_available()
    assert catalog.models == ("llama3",)
    assert catalog.default == "llama3"
    assert catalog.error.startswith("Could not reach the assistant server at http://127.0.0.1:")


def test_a_failure_is_cached_briefly_too(openai_settings, fake_openai):
    fake_openai.status = 500
    assert "HTTP 500" in models_available().error
    assert "HTTP 500" in models_available().error
    assert _model_fetches(fake_openai) == 1


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "refused the API key (HTTP 401); check OPENAI_API_KEY: bad key"),
        (403, "refused the API key (HTTP 403)"),
        (404, "has no model list at"),
        (500, "The assistant server failed (HTTP 500): bad key"),
        (502, "failed (HTTP 502)"),
    ],
)
def test_a_refusal_is_a_sentence_not_an_exception(openai_settings, fake_openai, status, words):
    fake_openai.status = status
    fake_openai.error_body = {"error": {"message": "bad key"}}
    catalog = models_available()
    assert words in catalog.error
    assert catalog.models == ("llama3",)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>Welcome to nginx</html>", "is not JSON: '<html>Welcome to nginx</html>'"),
        (b'{"models": [{"name": "llama3"}]}', "is not in the OpenAI format"),
        (b'["llama3"]', "is not in the OpenAI format"),
        (b"\xff\xfe garbage", "is not JSON"),
    ],
)
def test_a_garbled_list_is_a_sentence_not_an_exception(openai_settings, fake_openai, body, words):
    fake_openai.models_body = body
    catalog = models_available()
    assert words in catalog.error
    assert catalog.models == ("llama3",)


def test_an_endless_list_is_refused(openai_settings, fake_openai):
    fake_openai.models_body = b'{"data": ["' + b"x" * MODEL_LIST_MAX_BYTES + b'"]}'
    assert "is larger than 4 MB" in models_available().error


# Checking a choice


@pytest.mark.parametrize("model", [None, "", "   "])
def test_no_model_is_the_default(openai_settings, model):
    assert chat_model_clean(model) == ""


def test_a_listed_model_is_accepted(openai_settings):
    assert chat_model_clean(" qwen2.5 ") == "qwen2.5"
    assert chat_model_clean("llama3") == "llama3"


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (5, "The model must be a string"),
        (["llama3"], "The model must be a string"),
        ("x" * 201, "longer than 200 characters"),
        ("llama\x003", "cannot be stored (U+0000)"),
        ("\ud800", "cannot be stored (U+D800)"),
    ],
)
def test_a_malformed_model_is_refused(openai_settings, model, words):
    with pytest.raises(ModelChoiceError, match=re.escape(words)):
        chat_model_clean(model)


def test_an_unlisted_model_is_refused_naming_the_available_ones(openai_settings):
    with pytest.raises(ModelChoiceError) as refused:
        chat_model_clean("gpt-5")
    assert refused.value.message == (
        "There is no model 'gpt-5' on the assistant server; the available models are: "
        "llama3, Mistral-7B, qwen2.5."
    )


def test_a_long_list_is_named_in_part(openai_settings, fake_openai):
    fake_openai.models = [f"model-{n:02}" for n in range(30)]
    with pytest.raises(ModelChoiceError) as refused:
        chat_model_clean("gpt-5")
    assert "model-18 and 11 more (GET /api/v1/models lists them)." in refused.value.message


def test_any_name_is_accepted_while_the_list_cannot_be_fetched(server_down):
    assert chat_model_clean("my-own-model") == "my-own-model"
    with pytest.raises(ModelChoiceError):
        chat_model_clean("x" * 201)


def test_the_builtin_backend_accepts_only_builtin(settings):
    settings.ASSISTANT_BACKEND = "builtin"
    assert chat_model_clean("builtin") == "builtin"
    with pytest.raises(ModelChoiceError, match="the available models are: builtin."):
        chat_model_clean("llama3")


def test_chat_model_set_stores_the_choice(openai_settings, chat):
    chat_model_set(chat=chat, model="qwen2.5")
    chat.refresh_from_db()
    assert chat.model == "qwen2.5"
    chat_model_set(chat=chat, model=None)
    chat.refresh_from_db()
    assert chat.model == ""


# Answering with the chat's model


async def test_the_backend_generates_with_the_chats_model(openai_settings, fake_openai):
    backend = backend_for_model("qwen2.5")
    assert [piece async for piece in backend.stream([Turn("user", "hi")], CONTEXT)] == [
        "Hello",
        " there",
    ]
    assert fake_openai.requests[-1]["body"]["model"] == "qwen2.5"


@pytest.mark.parametrize("model", ["", "builtin"])
def test_a_blank_or_builtin_model_generates_with_the_default(openai_settings, model):
    backend = backend_for_model(model)
    assert isinstance(backend, OpenAICompatibleBackend)
    assert backend.model == "llama3"


def test_the_builtin_backend_ignores_the_model(settings):
    settings.ASSISTANT_BACKEND = "builtin"
    assert isinstance(backend_for_model("llama3"), BuiltinBackend)


# GET /api/v1/models


def test_anonymous_gets_401_from_the_model_list(openai_settings, fake_openai):
    response = APIClient().get("/api/v1/models")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert fake_openai.requests == []


def test_a_token_user_gets_the_model_list(openai_settings, alice_api):
    response = alice_api.get("/api/v1/models")
    assert response.status_code == 200
    assert response.json() == {
        "backend": "openai",
        "default": "llama3",
        "models": [{"id": "llama3"}, {"id": "Mistral-7B"}, {"id": "qwen2.5"}],
        "error": None,
    }


def test_a_logged_in_user_gets_the_model_list(settings, client, charlie, charlie_organization):
    settings.ASSISTANT_BACKEND = "builtin"
    client.force_login(charlie)
    response = client.get("/api/v1/models")
    assert response.status_code == 200
    assert response.json() == {
        "backend": "builtin",
        "default": "builtin",
        "models": [{"id": "builtin"}],
        "error": None,
    }


def test_the_model_list_says_why_the_server_is_missing(server_down, alice_api):
    body = alice_api.get("/api/v1/models").json()
    assert body["models"] == [{"id": "llama3"}]
    assert body["error"].startswith("Could not reach the assistant server")


def test_the_model_list_refuses_other_methods(openai_settings, alice_api):
    response = alice_api.post("/api/v1/models", {}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


# A chat's model through the API


def test_a_chat_is_created_with_a_listed_model(openai_settings, alice_api):
    response = alice_api.post("/api/v1/chats", {"model": "qwen2.5"}, format="json")
    assert response.status_code == 201
    assert response.json()["model"] == "qwen2.5"
    assert Chat.objects.get(pk=response.json()["id"]).model == "qwen2.5"


@pytest.mark.parametrize("model", [None, ""])
def test_a_chat_created_without_a_model_has_the_default(openai_settings, alice_api, model):
    response = alice_api.post("/api/v1/chats", {"model": model}, format="json")
    assert response.status_code == 201
    assert response.json()["model"] == ""


def test_a_chat_with_an_unlisted_model_is_not_created(openai_settings, alice_api):
    response = alice_api.post("/api/v1/chats", {"model": "gpt-5"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["fields"]["model"] == [
        "There is no model 'gpt-5' on the assistant server; the available models are: "
        "llama3, Mistral-7B, qwen2.5."
    ]
    assert not Chat.objects.exists()


@pytest.mark.parametrize("model", [5, {"id": "llama3"}, "x" * 201, "llama\x003"])
def test_a_malformed_model_is_a_400_on_create_and_update(openai_settings, alice_api, chat, model):
    created = alice_api.post("/api/v1/chats", {"model": model}, format="json")
    updated = alice_api.patch(f"/api/v1/chats/{chat.pk}", {"model": model}, format="json")
    for response in (created, updated):
        assert response.status_code == 400
        assert list(response.json()["fields"]) == ["model"]
    assert Chat.objects.count() == 1


def test_the_chat_remembers_a_model_set_by_patch(openai_settings, alice_api, chat):
    response = alice_api.patch(f"/api/v1/chats/{chat.pk}", {"model": "qwen2.5"}, format="json")
    assert response.status_code == 200
    assert response.json()["model"] == "qwen2.5"
    assert response.json()["title"] == "Night shift"
    assert alice_api.get(f"/api/v1/chats/{chat.pk}").json()["model"] == "qwen2.5"
    [listed] = alice_api.get("/api/v1/chats").json()["results"]
    assert listed["model"] == "qwen2.5"
    reset = alice_api.patch(f"/api/v1/chats/{chat.pk}", {"model": None}, format="json")
    assert reset.json()["model"] == ""


def test_patch_renames_and_sets_the_model_together(openai_settings, alice_api, chat):
    body = {"title": "Yard", "model": "Mistral-7B"}
    response = alice_api.patch(f"/api/v1/chats/{chat.pk}", body, format="json")
    assert (response.json()["title"], response.json()["model"]) == ("Yard", "Mistral-7B")


def test_an_unlisted_model_on_patch_changes_nothing(openai_settings, alice_api, chat):
    body = {"title": "Yard", "model": "gpt-5"}
    response = alice_api.patch(f"/api/v1/chats/{chat.pk}", body, format="json")
    assert response.status_code == 400
    assert "llama3, Mistral-7B, qwen2.5" in response.json()["fields"]["model"][0]
    chat.refresh_from_db()
    assert (chat.title, chat.model) == ("Night shift", "")


def test_a_bad_title_with_a_good_model_changes_nothing(openai_settings, alice_api, chat):
    body = {"title": "", "model": "qwen2.5"}
    response = alice_api.patch(f"/api/v1/chats/{chat.pk}", body, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"title": ["The title must not be empty."]}
    chat.refresh_from_db()
    assert chat.model == ""


def test_patch_with_nothing_to_change_says_what_to_pass(openai_settings, alice_api, chat):
    response = alice_api.patch(f"/api/v1/chats/{chat.pk}", {}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"body": ['Pass "title", "model" or both.']}


def test_a_model_is_accepted_while_the_server_is_down(server_down, alice_api, chat):
    response = alice_api.patch(f"/api/v1/chats/{chat.pk}", {"model": "phi4"}, format="json")
    assert response.status_code == 200
    assert response.json()["model"] == "phi4"


def test_bob_and_charlie_cannot_set_the_model_of_alices_chat(
    openai_settings, bob_api, charlie_api, chat
):
    for client in (bob_api, charlie_api):
        response = client.patch(f"/api/v1/chats/{chat.pk}", {"model": "qwen2.5"}, format="json")
        assert response.status_code == 404
        assert response.json() == {"error": "Not found.", "code": "not_found"}
    chat.refresh_from_db()
    assert chat.model == ""


def test_anonymous_cannot_set_a_chats_model(openai_settings, chat):
    response = APIClient().patch(f"/api/v1/chats/{chat.pk}", {"model": "qwen2.5"}, format="json")
    assert response.status_code == 401
    chat.refresh_from_db()
    assert chat.model == ""


@pytest.mark.django_db(transaction=True)
async def test_a_prompt_in_a_chat_with_a_model_is_answered_by_that_model(
    openai_settings, fake_openai, alice, organization, alice_api
):
    from tests.chats.asgi_http import request, runs_finished

    fake_openai.script = reply("Hi", " there")
    chat = await database_sync_to_async(chat_create)(user=alice, organization=organization)
    await database_sync_to_async(chat_model_set)(chat=chat, model="qwen2.5")
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": "hi"}
    )
    await stream.read_all()
    await runs_finished()
    assert stream.text() == "Hi there"
    completions = [r for r in fake_openai.requests if r["path"] == "/v1/chat/completions"]
    assert [r["body"]["model"] for r in completions] == ["qwen2.5"]
