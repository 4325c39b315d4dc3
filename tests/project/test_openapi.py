"""The API's published contract: the schema, its documentation pages, the browsable API."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db

SSE_OPERATIONS = [
    ("/api/v1/chats/{chat_id}/messages", "post"),
    ("/chats/{chat_id}/messages", "post"),
    ("/api/v1/chats/{chat_id}/messages/{message_id}/stream", "get"),
    ("/chats/{chat_id}/messages/{message_id}/stream", "get"),
]


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/v1/schema", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_schema_generates_and_validates_without_a_warning(tmp_path):
    # --fail-on-warn: a view spectacular cannot describe (no serializer guessed, colliding
    # names) fails here rather than publishing a vague contract.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert yaml.safe_load(out.read_text())["openapi"].startswith("3.")


def test_curl_gets_the_schema_as_yaml_and_as_json_without_logging_in(client):
    response = client.get("/api/v1/schema")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(response.content)["info"]["title"] == "Sightline API"
    as_json = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert json.loads(as_json.content)["info"]["title"] == "Sightline API"


def test_it_describes_the_plain_endpoints_too(schema):
    paths = schema["paths"]
    for path, method in SSE_OPERATIONS:
        content = paths[path][method]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"], path
        assert "X-Message-Id" in paths[path][method]["responses"]["200"]["headers"]
    for path in (
        "/api/v1/chats/{chat_id}/messages/{message_id}/stop",
        "/chats/{chat_id}/messages/{message_id}/stop",
    ):
        assert paths[path]["post"]["responses"]["200"]["content"]["application/json"]
    ingest = paths["/api/v1/actions/actions/send"]["post"]
    body = schema["components"]["schemas"]["FrameRequest"]
    assert ingest["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/FrameRequest"
    )
    assert set(body["required"]) == {"streamName", "streamType", "frame", "timestamp", "camera_id"}


def test_every_error_response_is_the_one_error_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    assert sorted(error["required"]) == ["code", "error"]
    assert set(error["properties"]) == {"error", "code", "fields"}
    checked = 0
    for path, method, operation in _operations(schema):
        statuses = operation["responses"]
        assert "503" in statuses, (path, method)
        for status, response in statuses.items():
            if int(status) >= 400:
                assert response["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }, (path, method, status)
                checked += 1
    assert checked > 100


def test_authenticated_operations_name_both_schemes_and_their_refusals(schema):
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: POST /api/v1/auth/token, or the Tokens page.",
    }
    assert schema["components"]["securitySchemes"]["cookieAuth"]["in"] == "cookie"
    for path, method, operation in _operations(schema):
        if path == "/api/v1/auth/token":
            assert "429" in operation["responses"]  # throttled
            continue
        assert operation["security"] == [{"bearerAuth": []}, {"cookieAuth": []}], path
        assert {"401", "403"} <= set(operation["responses"]), (path, method)


def test_every_list_is_paged_the_same_way(schema):
    lists = [
        (path, operation)
        for path, method, operation in _operations(schema)
        if operation["operationId"].endswith("_list")
    ]
    assert len(lists) >= 6
    for path, operation in lists:
        body = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        component = schema["components"]["schemas"][body.rsplit("/", 1)[1]]
        assert set(component["properties"]) == {"count", "next", "previous", "results"}, path
        names = {parameter["name"] for parameter in operation["parameters"]}
        assert {"limit", "offset"} <= names, path


def test_switching_branch_is_documented_as_the_page_it_answers(schema):
    # POST, so drf-spectacular would document a bare array; it answers the message list's page.
    operation = schema["paths"]["/api/v1/chats/{chat_id}/branch"]["post"]
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert set(component["properties"]) == {"count", "next", "previous", "results"}


@pytest.mark.parametrize("url", ["/api/v1/docs", "/api/v1/redoc"])
def test_the_documentation_pages_load_only_this_servers_files(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
        assert client.get(asset).status_code == 200, asset
    assert "/api/v1/schema" in html


def test_a_person_with_a_session_gets_the_browsable_api_and_curl_still_gets_json(
    client, alice, alice_api, organization
):
    client.force_login(alice)
    page = client.get("/api/v1/chats", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    assert b"Chat List" in page.content
    assert client.get("/api/v1/chats").json()["results"] == []  # no Accept: JSON
    assert alice_api.get("/api/v1/chats", HTTP_ACCEPT="*/*").json()["count"] == 0
