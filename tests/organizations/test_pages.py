from __future__ import annotations

import pytest
from django.core.management import call_command

from organizations.models import ApiToken, Organization

pytestmark = pytest.mark.django_db


def test_pages_require_login(client):
    for url in ["/", "/account/tokens/", "/organizations/"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_token_page_shows_a_new_token_once(client, alice, organization):
    client.force_login(alice)
    response = client.post("/account/tokens/regenerate")
    assert response.status_code == 302
    page = client.get("/account/tokens/").content.decode()
    token = ApiToken.objects.get(user=alice)
    assert token.prefix in page and "copy it now" in page
    # The raw token is not on the page a second time.
    assert "copy it now" not in client.get("/account/tokens/").content.decode()


def test_regenerate_revokes_old_tokens(client, alice, alice_api):
    client.force_login(alice)
    client.post("/account/tokens/regenerate")
    assert ApiToken.objects.filter(user=alice).count() == 1
    assert alice_api.get("/api/v1/organizations").status_code == 401


def test_charlie_cannot_revoke_alices_token(client, charlie, alice_api, alice):
    client.force_login(charlie)
    token = ApiToken.objects.get(user=alice)
    client.post(f"/account/tokens/{token.id}/revoke")
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_organizations_page_lists_members_only_of_own(
    client, alice, organization, charlie_organization
):
    client.force_login(alice)
    page = client.get("/organizations/").content.decode()
    assert "Alice Co" in page and "bob" in page
    assert "Charlie Ltd" not in page


def test_demo_setup_prints_a_fresh_password_once(capsys):
    call_command("demo_setup")
    first = capsys.readouterr().out
    assert "password:" in first
    password = first.split("password:")[1].split()[0]
    assert len(password) >= 12
    assert Organization.objects.filter(name="Demo Organization").exists()
    call_command("demo_setup")
    assert password not in capsys.readouterr().out


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
