from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from organizations.models import ApiToken, Membership

pytestmark = pytest.mark.django_db


def test_token_endpoint_returns_a_working_token(alice, organization):
    response = APIClient().post(
        "/api/v1/auth/token", {"username": "alice", "password": "alice-password"}, format="json"
    )
    assert response.status_code == 201
    token = response.json()["token"]
    assert token.startswith("sl_")
    # Only a digest is stored.
    assert not ApiToken.objects.filter(digest=token).exists()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/organizations").status_code == 200


def test_token_endpoint_rejects_wrong_password(alice):
    response = APIClient().post(
        "/api/v1/auth/token", {"username": "alice", "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": "Wrong username or password.",
        "code": "invalid_credentials",
    }


def test_token_endpoint_rejects_malformed_json(alice):
    response = APIClient().post("/api/v1/auth/token", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed"


def test_token_endpoint_rejects_missing_fields(alice):
    response = APIClient().post("/api/v1/auth/token", {"username": "alice"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["fields"]


def test_revoked_token_is_refused_with_a_reason(alice_api, alice):
    ApiToken.objects.filter(user=alice).delete()
    response = alice_api.get("/api/v1/organizations")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_api_requires_authentication():
    response = APIClient().get("/api/v1/organizations")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_session_auth_requires_csrf(alice, organization):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password="alice-password")
    assert client.get("/api/v1/organizations").status_code == 200
    response = client.post("/api/v1/organizations", {"name": "Sneaky"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]


def test_list_shows_only_own_organizations_with_host_metadata(
    alice_api, charlie_organization, organization
):
    organization.server_host_url = "cams.example.org"
    organization.save()
    results = alice_api.get("/api/v1/organizations").json()["results"]
    assert results == [
        {
            "id": organization.id,
            "name": "Alice Co",
            "slug": "alice-co",
            "server_host_url": "cams.example.org",
            "ws_port": 7103,
            "time_zone": "",
            "system_prompt": "",
            "role": "owner",
            "created_at": results[0]["created_at"],
        }
    ]


def test_create_makes_the_caller_owner(bob_api, bob):
    response = bob_api.post(
        "/api/v1/organizations", {"name": "Bob's Garage", "ws_port": 9000}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["role"] == "owner" and body["ws_port"] == 9000 and body["slug"] == "bobs-garage"
    assert Membership.objects.get(organization_id=body["id"], user=bob).role == "owner"


def test_create_rejects_bad_port(alice_api):
    response = alice_api.post(
        "/api/v1/organizations", {"name": "X", "ws_port": 70000}, format="json"
    )
    assert response.status_code == 400
    assert "ws_port" in response.json()["fields"]


def test_member_can_read_detail(bob_api, organization):
    response = bob_api.get(f"/api/v1/organizations/{organization.id}")
    assert response.status_code == 200
    assert response.json()["role"] == "member"


def test_charlie_gets_404_for_alices_organization(charlie_api, organization):
    response = charlie_api.get(f"/api/v1/organizations/{organization.id}")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}


def test_unknown_api_path_answers_json_404(alice_api):
    response = alice_api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
