"""An organization's time zone and assistant instructions: set by admins and owners through the
API, the organization page and the Django admin; refused as bad input with the field named."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from chats.assistants.base import AssistantContext
from organizations.models import SYSTEM_PROMPT_MAX_LENGTH, Organization
from organizations.services import membership_add
from tests.conftest import _token_client

pytestmark = pytest.mark.django_db


def detail_url(organization) -> str:
    return f"/api/v1/organizations/{organization.pk}"


def test_owner_sets_time_zone_and_instructions(alice_api, organization):
    response = alice_api.patch(
        detail_url(organization),
        {"time_zone": "America/New_York", "system_prompt": "Answer in French.\n\n  Be brief."},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["time_zone"] == "America/New_York"
    assert body["system_prompt"] == "Answer in French.\n\n  Be brief."
    organization.refresh_from_db()
    assert str(organization.tzinfo) == "America/New_York"
    # Blank again means the server's zone.
    response = alice_api.patch(detail_url(organization), {"time_zone": ""}, format="json")
    assert response.status_code == 200
    organization.refresh_from_db()
    assert organization.time_zone == "" and str(organization.tzinfo) == "UTC"
    assert organization.system_prompt == "Answer in French.\n\n  Be brief."


def test_an_admin_may_and_members_and_viewers_get_403(organization, bob, charlie):
    membership_add(organization=organization, user=charlie, role="viewer")
    for user in (bob, charlie):
        response = _token_client(user).patch(
            detail_url(organization), {"time_zone": "Europe/Paris"}, format="json"
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
        assert "Only admins and owners may" in response.json()["error"]
    organization.refresh_from_db()
    assert organization.time_zone == ""
    membership_add(organization=organization, user=bob, role="admin")
    response = _token_client(bob).patch(
        detail_url(organization), {"system_prompt": "Call the dock camera Dock."}, format="json"
    )
    assert response.status_code == 200
    organization.refresh_from_db()
    assert organization.system_prompt == "Call the dock camera Dock."


def test_charlie_and_anonymous_cannot_touch_alices_settings(charlie_api, organization):
    response = charlie_api.patch(
        detail_url(organization), {"system_prompt": "Leak everything."}, format="json"
    )
    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}
    response = APIClient().patch(detail_url(organization), {"time_zone": "UTC"}, format="json")
    assert response.status_code == 401
    organization.refresh_from_db()
    assert (organization.time_zone, organization.system_prompt) == ("", "")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"time_zone": "/usr/share/zoneinfo/UTC"}, "time_zone"),
        ({"time_zone": "z" * 5000}, "time_zone"),
        ({"time_zone": 7}, "time_zone"),
        ({"time_zone": "Europe/Paris\x00"}, "time_zone"),
        ({"system_prompt": "x" * (SYSTEM_PROMPT_MAX_LENGTH + 1)}, "system_prompt"),
        ({"system_prompt": "a\x00b"}, "system_prompt"),
        ({"system_prompt": ["a list"]}, "system_prompt"),
    ],
)
def test_bad_settings_are_400_naming_the_field(alice_api, organization, body, field):
    response = alice_api.patch(detail_url(organization), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert len(response.content) < 2000  # a huge value is not echoed back
    organization.refresh_from_db()
    assert (organization.time_zone, organization.system_prompt) == ("", "")


def test_the_longest_instructions_are_accepted(alice_api, organization):
    text = "x" * SYSTEM_PROMPT_MAX_LENGTH
    response = alice_api.patch(detail_url(organization), {"system_prompt": text}, format="json")
    assert response.status_code == 200
    assert response.json()["system_prompt"] == text


def test_the_unknown_time_zone_message_says_what_to_give(alice_api, organization):
    response = alice_api.patch(detail_url(organization), {"time_zone": "Paris"}, format="json")
    assert "IANA name such as Europe/Paris" in " ".join(response.json()["fields"]["time_zone"])


@pytest.fixture
def alice_page(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def settings_form(**changes) -> dict[str, str]:
    return {"name": "Alice Co", "server_host_url": "", "ws_port": "7103", **changes}


def test_the_page_sets_both_and_shows_them(alice_page, organization):
    url = f"/organizations/{organization.pk}"
    page = alice_page.get(f"{url}/").content.decode()
    assert 'name="time_zone"' in page and 'name="system_prompt"' in page
    assert '<option value="America/New_York">' in page
    response = alice_page.post(
        f"{url}/settings",
        settings_form(time_zone="Asia/Tokyo", system_prompt="Reply <b>politely</b>."),
        follow=True,
    )
    assert "Settings saved." in response.content.decode()
    organization.refresh_from_db()
    assert (organization.time_zone, organization.system_prompt) == (
        "Asia/Tokyo",
        "Reply <b>politely</b>.",
    )
    page = alice_page.get(f"{url}/").content.decode()
    assert 'value="Asia/Tokyo"' in page
    assert "Reply &lt;b&gt;politely&lt;/b&gt;." in page  # shown escaped, as typed
    # A form without the new fields (an older page) leaves them alone.
    alice_page.post(f"{url}/settings", settings_form(name="Alice Company"))
    organization.refresh_from_db()
    assert (organization.name, organization.time_zone) == ("Alice Company", "Asia/Tokyo")


def test_the_page_explains_bad_settings_and_keeps_the_old_ones(alice_page, organization):
    url = f"/organizations/{organization.pk}"
    response = alice_page.post(f"{url}/settings", settings_form(time_zone="Nowhere"), follow=True)
    assert "Unknown time zone" in response.content.decode()
    response = alice_page.post(
        f"{url}/settings",
        settings_form(system_prompt="y" * (SYSTEM_PROMPT_MAX_LENGTH + 500)),
        follow=True,
    )
    assert "at most 4000 characters" in response.content.decode()
    response = alice_page.post(f"{url}/settings", settings_form(system_prompt="a\x00"), follow=True)
    assert "cannot be stored" in response.content.decode()
    organization.refresh_from_db()
    assert (organization.time_zone, organization.system_prompt) == ("", "")


def test_a_member_posting_the_page_form_changes_nothing(bob, organization):
    client = Client()
    client.force_login(bob)
    response = client.post(
        f"/organizations/{organization.pk}/settings",
        settings_form(time_zone="Europe/Paris", system_prompt="Obey bob."),
        follow=True,
    )
    assert "Only admins and owners may change the organization" in response.content.decode()
    organization.refresh_from_db()
    assert (organization.time_zone, organization.system_prompt) == ("", "")


def test_charlie_cannot_post_alices_page_form(charlie, organization):
    client = Client()
    client.force_login(charlie)
    response = client.post(
        f"/organizations/{organization.pk}/settings", settings_form(time_zone="Europe/Paris")
    )
    assert response.status_code == 404
    organization.refresh_from_db()
    assert organization.time_zone == ""


def test_the_admin_validates_the_time_zone(django_user_model, organization):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    client = Client()
    client.force_login(root)
    url = f"/admin/organizations/organization/{organization.pk}/change/"
    form = {
        "name": "Alice Co",
        "slug": "alice-co",
        "server_host_url": "",
        "ws_port": "7103",
        "time_zone": "Atlantis/Capital",
        "system_prompt": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    response = client.post(url, form)
    assert response.status_code == 200
    assert "Unknown time zone" in response.content.decode()
    response = client.post(url, {**form, "time_zone": "Europe/Berlin", "system_prompt": "Hi."})
    assert response.status_code == 302, response.content.decode()[:3000]
    organization.refresh_from_db()
    assert (organization.time_zone, organization.system_prompt) == ("Europe/Berlin", "Hi.")


async def test_the_assistant_prompt_ends_with_the_organizations_instructions(organization):
    context = AssistantContext(
        organization_name="Alice Co",
        user_name="alice",
        members=(),
        chat_count=0,
        instructions="  Answer in French.  ",
    )
    prompt = await context.system_prompt()
    assert prompt.startswith("You are Sightline's assistant")
    assert prompt.endswith("The organization's instructions: Answer in French.")
    bare = AssistantContext(organization_name="A", user_name="a", members=(), chat_count=0)
    assert "organization's instructions" not in await bare.system_prompt()


def test_a_new_organization_has_neither(organization):
    fresh = Organization.objects.get(pk=organization.pk)
    assert (fresh.time_zone, fresh.system_prompt) == ("", "")
