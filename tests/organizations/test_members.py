"""Members managed in the product: the API and the organization page, with the last-owner rule,
cross-organization and malformed input."""

from __future__ import annotations

import pytest
from django.test import Client

from organizations.models import ApiToken, Membership, Organization
from organizations.services import membership_add
from tests.conftest import _token_client

pytestmark = pytest.mark.django_db


def members_url(organization) -> str:
    return f"/api/v1/organizations/{organization.pk}/members"


def roles_of(organization) -> dict[str, str]:
    return dict(
        Membership.objects.filter(organization=organization).values_list("user__username", "role")
    )


def test_members_are_listed_paginated_most_powerful_first(alice_api, organization, charlie):
    membership_add(organization=organization, user=charlie, role="viewer")
    body = alice_api.get(members_url(organization)).json()
    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert [(m["username"], m["role"]) for m in body["results"]] == [
        ("alice", "owner"),
        ("bob", "member"),
        ("charlie", "viewer"),
    ]
    assert set(body["results"][0]) == {"user_id", "username", "role", "joined_at"}
    page = alice_api.get(members_url(organization) + "?limit=1&offset=1").json()
    assert [m["username"] for m in page["results"]] == ["bob"] and page["next"] and page["previous"]


def test_owner_adds_by_username_or_email_changes_role_and_removes(
    alice_api, organization, charlie, django_user_model
):
    response = alice_api.post(
        members_url(organization), {"user": "CHARLIE@example.org", "role": "viewer"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["username"] == "charlie"
    response = alice_api.patch(
        f"{members_url(organization)}/{charlie.pk}", {"role": "admin"}, format="json"
    )
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert roles_of(organization)["charlie"] == "admin"
    assert alice_api.delete(f"{members_url(organization)}/{charlie.pk}").status_code == 204
    assert "charlie" not in roles_of(organization)


def test_adding_an_existing_member_is_a_conflict(alice_api, organization):
    response = alice_api.post(
        members_url(organization), {"user": "bob", "role": "viewer"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "already_member"
    assert roles_of(organization)["bob"] == "member"


def test_the_last_owner_cannot_be_demoted_or_removed(alice, alice_api, organization):
    demote = alice_api.patch(
        f"{members_url(organization)}/{alice.pk}", {"role": "admin"}, format="json"
    )
    assert demote.status_code == 409
    assert demote.json() == {
        "error": "alice is the last owner; make someone else an owner first.",
        "code": "last_owner",
    }
    remove = alice_api.delete(f"{members_url(organization)}/{alice.pk}")
    assert remove.status_code == 409 and remove.json()["code"] == "last_owner"
    assert roles_of(organization)["alice"] == "owner"


def test_with_a_second_owner_the_first_may_step_down(alice, bob, alice_api, organization):
    membership_add(organization=organization, user=bob, role="owner")
    response = alice_api.patch(
        f"{members_url(organization)}/{alice.pk}", {"role": "member"}, format="json"
    )
    assert response.status_code == 200
    assert roles_of(organization) == {"alice": "member", "bob": "owner"}


def test_an_admin_manages_members_and_viewers_but_not_admins_or_owners(
    alice, bob, organization, django_user_model
):
    membership_add(organization=organization, user=bob, role="admin")
    carol = django_user_model.objects.create_user("carol", "carol@example.org", "x")
    membership_add(organization=organization, user=carol, role="admin")
    dave = django_user_model.objects.create_user("dave", "dave@example.org", "x")
    membership_add(organization=organization, user=dave, role="viewer")
    api = _token_client(bob)
    url = members_url(organization)
    assert api.patch(f"{url}/{dave.pk}", {"role": "member"}, format="json").status_code == 200
    # Not an admin's to give, nor to take away.
    for response in [
        api.patch(f"{url}/{dave.pk}", {"role": "admin"}, format="json"),
        api.patch(f"{url}/{carol.pk}", {"role": "viewer"}, format="json"),
        api.patch(f"{url}/{alice.pk}", {"role": "viewer"}, format="json"),
        api.delete(f"{url}/{carol.pk}"),
        api.delete(f"{url}/{alice.pk}"),
    ]:
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
        assert (
            "Only owners may add, change and remove admins and owners" in response.json()["error"]
        )
    assert roles_of(organization) == {
        "alice": "owner",
        "bob": "admin",
        "carol": "admin",
        "dave": "member",
    }
    assert api.delete(f"{url}/{dave.pk}").status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "nobody-here", "role": "viewer"}, "user"),
        ({"user": "bob@nowhere.example", "role": "viewer"}, "user"),
        ({"user": "charlie", "role": "superhero"}, "role"),
        ({"user": "charlie", "role": ["viewer"]}, "role"),
        ({"user": 42, "role": "viewer"}, None),
        ({"user": ["charlie"], "role": "viewer"}, "user"),
        ({"user": "c" * 100_000, "role": "viewer"}, "user"),
        ({"user": "charlie", "role": "v" * 100_000}, "role"),
        ({"role": "viewer"}, "user"),
        ({"user": "charlie"}, "role"),
        ({"user": None, "role": "viewer"}, "user"),
    ],
)
def test_malformed_member_input_is_a_json_400_and_adds_nobody(
    alice_api, organization, charlie, body, field
):
    response = alice_api.post(members_url(organization), body, format="json")
    if field is None:  # a number is read as the username "42", which nobody has
        field = "user"
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]
    assert len(response.content) < 2000  # a huge value is not echoed back
    assert set(roles_of(organization)) == {"alice", "bob"}


@pytest.mark.parametrize("raw", ["[]", '"viewer"', "{not json", "null"])
def test_a_body_that_is_not_an_object_is_a_json_400(alice_api, organization, raw):
    response = alice_api.post(members_url(organization), raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in {"invalid", "malformed"}


def test_bad_role_on_change_is_a_400_and_changes_nothing(bob, alice_api, organization):
    for role in ["boss", "", 7, None]:
        response = alice_api.patch(
            f"{members_url(organization)}/{bob.pk}", {"role": role}, format="json"
        )
        assert response.status_code == 400, (role, response.content)
    assert roles_of(organization)["bob"] == "member"


def test_unknown_members_and_huge_ids_are_404(alice_api, organization):
    url = members_url(organization)
    for user_id in [999_999, 10**25]:
        assert (
            alice_api.patch(f"{url}/{user_id}", {"role": "viewer"}, format="json").status_code
            == 404
        )
        assert alice_api.delete(f"{url}/{user_id}").status_code == 404
    assert alice_api.get(f"/api/v1/organizations/{10**25}/members").status_code == 404


def test_charlie_gets_404_for_everything_about_alices_members(
    charlie_api, organization, bob, charlie_organization
):
    url = members_url(organization)
    assert charlie_api.get(url).status_code == 404
    assert (
        charlie_api.post(url, {"user": "charlie", "role": "owner"}, format="json").status_code
        == 404
    )
    assert (
        charlie_api.patch(f"{url}/{bob.pk}", {"role": "viewer"}, format="json").status_code == 404
    )
    assert charlie_api.delete(f"{url}/{bob.pk}").status_code == 404
    assert (
        charlie_api.patch(
            f"/api/v1/organizations/{organization.pk}", {"name": "Mine"}, format="json"
        ).status_code
        == 404
    )
    assert charlie_api.delete(f"/api/v1/organizations/{organization.pk}").status_code == 404
    assert roles_of(organization) == {"alice": "owner", "bob": "member"}
    # Nor can Alice's owner reach into Charlie's organization from hers.
    other = f"/api/v1/organizations/{charlie_organization.pk}/members"
    alice_api = _token_client(organization.memberships.get(role="owner").user)
    assert (
        alice_api.post(other, {"user": "alice", "role": "owner"}, format="json").status_code == 404
    )


def test_unauthenticated_member_requests_are_401(organization):
    from rest_framework.test import APIClient

    assert APIClient().get(members_url(organization)).status_code == 401
    assert APIClient().post(members_url(organization), {}, format="json").status_code == 401


def test_removing_a_member_leaves_their_tokens_but_ends_their_access(
    bob, bob_api, alice_api, organization
):
    assert alice_api.delete(f"{members_url(organization)}/{bob.pk}").status_code == 204
    assert ApiToken.objects.filter(user=bob).exists()
    assert bob_api.get(f"/api/v1/organizations/{organization.pk}").status_code == 404


# --- the organization settings through the API ------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "cams.example.org/path",
        "https://cams.example.org/ws",
        "user:pw@cams.example.org",
        "cams example.org",
        "ftp://cams.example.org",
        "cams.example.org:99999",
        "cams.example.org:port",
        "https://",
        "javascript:alert(1)",
        "a" * 300,
    ],
)
def test_server_host_url_must_be_a_host_with_optional_scheme_and_port(
    alice_api, organization, value
):
    response = alice_api.patch(
        f"/api/v1/organizations/{organization.pk}", {"server_host_url": value}, format="json"
    )
    assert response.status_code == 400, value
    assert "server_host_url" in response.json()["fields"]
    organization.refresh_from_db()
    assert organization.server_host_url == ""
    create = alice_api.post(
        "/api/v1/organizations", {"name": "X", "server_host_url": value}, format="json"
    )
    assert create.status_code == 400
    assert not Organization.objects.filter(name="X").exists()


@pytest.mark.parametrize(
    "value",
    ["cams.example.org", "wss://cams.example.org:8443", "http://10.0.0.5:7103", "[::1]:7103", ""],
)
def test_good_server_host_urls_are_accepted(alice_api, organization, value):
    response = alice_api.patch(
        f"/api/v1/organizations/{organization.pk}", {"server_host_url": value}, format="json"
    )
    assert response.status_code == 200, response.json()
    organization.refresh_from_db()
    assert organization.server_host_url == value


def test_organization_patch_rejects_wrong_types(alice_api, organization):
    for body in [{"ws_port": "many"}, {"ws_port": 0}, {"name": ""}, {"name": "n" * 500}, []]:
        response = alice_api.patch(f"/api/v1/organizations/{organization.pk}", body, format="json")
        assert response.status_code == 400, body
    organization.refresh_from_db()
    assert (organization.name, organization.ws_port) == ("Alice Co", 7103)


def test_organizations_list_is_paginated(alice_api, organization, alice):
    body = alice_api.get("/api/v1/organizations?limit=1").json()
    assert body["count"] == 1 and [o["role"] for o in body["results"]] == ["owner"]


# --- the organization page --------------------------------------------------------------------


@pytest.fixture
def alice_page(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_the_page_adds_changes_and_removes_members(alice_page, organization, charlie):
    url = f"/organizations/{organization.pk}"
    page = alice_page.get(f"{url}/").content.decode()
    assert "Add member" in page and "bob" in page
    response = alice_page.post(
        f"{url}/members/add", {"user": "charlie", "role": "viewer"}, follow=True
    )
    assert "Added charlie as viewer." in response.content.decode()
    alice_page.post(f"{url}/members/{charlie.pk}/role", {"role": "member"})
    assert roles_of(organization)["charlie"] == "member"
    alice_page.post(f"{url}/members/{charlie.pk}/remove")
    assert "charlie" not in roles_of(organization)


def test_the_page_explains_the_last_owner_rule_and_bad_input(alice, alice_page, organization):
    url = f"/organizations/{organization.pk}"
    response = alice_page.post(f"{url}/members/{alice.pk}/remove", follow=True)
    assert "alice is the last owner and cannot be removed" in response.content.decode()
    response = alice_page.post(
        f"{url}/members/add", {"user": "ghost", "role": "viewer"}, follow=True
    )
    assert "No active user has this username or e-mail address." in response.content.decode()
    response = alice_page.post(f"{url}/members/add", {"user": "bob", "role": "god"}, follow=True)
    assert "Unknown role" in response.content.decode()
    response = alice_page.post(
        f"{url}/settings", {"name": "A", "server_host_url": "x/y", "ws_port": "7103"}, follow=True
    )
    assert "no path, user or spaces" in response.content.decode()
    response = alice_page.post(
        f"{url}/settings", {"name": "A", "server_host_url": "", "ws_port": "lots"}, follow=True
    )
    assert "must be a number" in response.content.decode()
    assert roles_of(organization) == {"alice": "owner", "bob": "member"}
    organization.refresh_from_db()
    assert organization.name == "Alice Co"


def test_a_member_sees_no_forms_and_posting_changes_nothing(bob, organization, charlie):
    client = Client()
    client.force_login(bob)
    url = f"/organizations/{organization.pk}"
    page = client.get(f"{url}/").content.decode()
    assert 'id="member-add"' not in page and "Change role" not in page
    response = client.post(f"{url}/members/add", {"user": "charlie", "role": "viewer"}, follow=True)
    assert "Only admins and owners may add, change and remove members" in response.content.decode()
    assert "charlie" not in roles_of(organization)


def test_deleting_from_the_page_needs_the_name_typed(alice_page, organization):
    url = f"/organizations/{organization.pk}/delete"
    alice_page.post(url, {"confirm_name": "alice co"})
    assert Organization.objects.filter(pk=organization.pk).exists()
    response = alice_page.post(url, {"confirm_name": "Alice Co"}, follow=True)
    assert not Organization.objects.filter(pk=organization.pk).exists()
    assert "Deleted Alice Co." in response.content.decode()


def test_charlie_gets_404_for_alices_organization_page_and_forms(
    charlie, organization, charlie_organization, bob
):
    client = Client()
    client.force_login(charlie)
    url = f"/organizations/{organization.pk}"
    assert client.get(f"{url}/").status_code == 404
    assert (
        client.post(f"{url}/members/add", {"user": "charlie", "role": "owner"}).status_code == 404
    )
    assert client.post(f"{url}/members/{bob.pk}/remove").status_code == 404
    assert client.post(f"{url}/settings", {"name": "Mine", "ws_port": "1"}).status_code == 404
    assert client.post(f"{url}/delete", {"confirm_name": "Alice Co"}).status_code == 404
    assert roles_of(organization) == {"alice": "owner", "bob": "member"}


# --- the admin's "add API token" --------------------------------------------------------------


def test_admin_add_token_generates_it_and_shows_it_once(client, django_user_model, alice):
    django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    client.login(username="root", password="root-password")
    for name in ["first", "second"]:  # a second add used to be a 500 (IntegrityError)
        response = client.post(
            "/admin/organizations/apitoken/add/", {"user": alice.pk, "name": name}, follow=True
        )
        assert response.status_code == 200
        text = response.content.decode()
        raw = text.split("The new token for alice: ")[1].split(" ")[0]
        token = ApiToken.objects.get(name=name)
        assert token.digest == ApiToken.digest_of(raw) and raw.startswith(token.prefix)
        api = Client(headers={"Authorization": f"Bearer {raw}"})
        assert api.get("/api/v1/organizations").status_code == 200
        # Never shown again.
        assert (
            raw
            not in client.get(f"/admin/organizations/apitoken/{token.pk}/change/").content.decode()
        )


def test_nul_in_page_forms_is_refused_as_bad_input_on_postgresql(
    postgresql, alice_page, organization
):
    url = f"/organizations/{organization.pk}"
    response = alice_page.post(
        f"{url}/members/add", {"user": "\x00", "role": "viewer"}, follow=True
    )
    assert response.status_code == 200
    assert "cannot be stored (U+0000)" in response.content.decode()
    response = alice_page.post(
        f"{url}/settings", {"name": "a\x00b", "server_host_url": "", "ws_port": "7103"}, follow=True
    )
    assert response.status_code == 200
    assert "cannot be stored (U+0000)" in response.content.decode()
    organization.refresh_from_db()
    assert organization.name == "Alice Co"
    assert roles_of(organization) == {"alice": "owner", "bob": "member"}


def test_nul_reaching_the_services_is_a_validation_error_on_postgresql(
    postgresql, alice, organization
):
    from django.core.exceptions import ValidationError

    from organizations.services import member_add, organization_create, organization_update

    with pytest.raises(ValidationError) as refused:
        organization_create(name="a\x00b", owner=alice)
    assert "name" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        organization_update(actor=alice, organization=organization, server_host_url="h\x00")
    assert "server_host_url" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        member_add(actor=alice, organization=organization, identifier="bo\x00b", role="viewer")
    assert "user" in refused.value.message_dict
    assert Organization.objects.count() == 1


def test_nul_in_the_api_is_a_json_400_on_postgresql(postgresql, alice_api, organization):
    for response in [
        alice_api.post("/api/v1/organizations", {"name": "a\x00b"}, format="json"),
        alice_api.patch(
            f"/api/v1/organizations/{organization.pk}", {"name": "a\x00b"}, format="json"
        ),
        alice_api.post(
            members_url(organization), {"user": "\x00", "role": "viewer"}, format="json"
        ),
    ]:
        assert response.status_code == 400
        assert response.json()["code"] == "invalid"


@pytest.mark.django_db(transaction=True)
def test_two_adds_of_the_same_user_at_once_are_one_member_and_one_conflict(
    postgresql, alice, organization, charlie
):
    # The other add commits only after this one has passed its "not a member yet" check and
    # waits on the unique constraint: the loser must be the already_member conflict, not a 500.
    import threading
    import time

    from django.db import connection, transaction

    from organizations.services import MembershipConflict, member_add

    inserted, outcome = threading.Event(), {}

    def the_other_add() -> None:
        try:
            with transaction.atomic():
                Membership.objects.create(organization=organization, user=charlie, role="member")
                inserted.set()
                time.sleep(1.0)
        finally:
            connection.close()

    other = threading.Thread(target=the_other_add)
    other.start()
    assert inserted.wait(5)
    try:
        member_add(actor=alice, organization=organization, identifier="charlie", role="viewer")
    except MembershipConflict as conflict:
        outcome["code"] = conflict.code
    other.join()
    assert outcome == {"code": "already_member"}
    assert roles_of(organization)["charlie"] == "member"


def test_api_changes_check_the_actor_s_role_once(alice_api, organization, bob, bob_api, charlie):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = f"/api/v1/organizations/{organization.pk}"
    # (The organization's answer carries the caller's role: one more read, after the change.)
    for expected_reads, request in [
        (2, lambda: alice_api.patch(url, {"name": "Renamed"}, format="json")),
        (1, lambda: alice_api.patch(f"{url}/members/{bob.pk}", {"role": "viewer"}, format="json")),
        (
            1,
            lambda: alice_api.post(
                f"{url}/members", {"user": "charlie", "role": "viewer"}, format="json"
            ),
        ),
    ]:
        with CaptureQueriesContext(connection) as queries:
            response = request()
        assert response.status_code in (200, 201)
        role_reads = [
            query["sql"]
            for query in queries.captured_queries
            if query["sql"].startswith('SELECT "organizations_membership"."role"')
        ]
        assert len(role_reads) == expected_reads, role_reads
    # The same 403 as before, now from the service alone.
    for response in [
        bob_api.patch(url, {"name": "Mine"}, format="json"),
        bob_api.post(f"{url}/members", {"user": "charlie", "role": "viewer"}, format="json"),
        bob_api.patch(f"{url}/members/{bob.pk}", {"role": "owner"}, format="json"),
    ]:
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
