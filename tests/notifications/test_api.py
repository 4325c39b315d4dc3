"""The rules and webhooks API: CRUD, who may do what, bad input, the delivery log, test sends."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from notifications.models import AlertRule, Webhook, WebhookDelivery
from notifications.services import alert_filter_create
from organizations.services import membership_add

pytestmark = pytest.mark.django_db

RULE = {"name": "Person at the door", "classes": ["person"], "cooldown_seconds": 30}
WEBHOOK = {"name": "Home Assistant", "url": "https://ha.example.com/api/webhook/abc"}


@pytest.fixture
def viewer_api(django_user_model, organization):
    from tests.conftest import _token_client

    dora = django_user_model.objects.create_user("dora", "dora@example.org", "dora-password")
    membership_add(organization=organization, user=dora, role="viewer")
    return _token_client(dora)


@pytest.fixture
def webhook(organization, front_door):
    return alert_filter_create(
        model=Webhook,
        organization=organization,
        cameras=[front_door],
        name="Receiver",
        url="https://receiver.example.com/hook?token=s3cret",
        classes=["person"],
    )


@pytest.fixture
def rule(organization):
    return alert_filter_create(model=AlertRule, organization=organization, cameras=[], name="Any")


def test_an_admin_creates_reads_changes_and_deletes_a_rule(alice_api, front_door):
    created = alice_api.post(
        "/api/v1/alert-rules",
        {
            **RULE,
            "cameras": [front_door.public_id],
            "quiet_hours_start": "22:00",
            "quiet_hours_end": "06:30",
            "notify_mqtt": True,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["cameras"] == [front_door.public_id]
    assert body["classes"] == ["person"]
    assert (body["quiet_hours_start"], body["quiet_hours_end"]) == ("22:00", "06:30")
    assert body["notify_mqtt"] is True and body["notify_browser"] is True
    url = f"/api/v1/alert-rules/{body['id']}"
    assert alice_api.get(url).json()["name"] == RULE["name"]
    changed = alice_api.patch(url, {"min_confidence": 0.6, "cameras": []}, format="json")
    assert changed.status_code == 200
    assert changed.json()["min_confidence"] == 0.6 and changed.json()["cameras"] == []
    listed = alice_api.get("/api/v1/alert-rules").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert alice_api.delete(url).status_code == 204
    assert not AlertRule.objects.exists()


def test_a_webhook_gets_a_generated_secret_shown_to_admins_only(alice_api, bob_api, viewer_api):
    created = alice_api.post("/api/v1/webhooks", WEBHOOK, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["include_snapshot"] is True
    url = f"/api/v1/webhooks/{body['id']}"
    assert alice_api.get(url).json()["secret"] == body["secret"]
    for reader in (bob_api, viewer_api):
        seen = reader.get(url).json()
        assert seen["secret"] is None
        assert reader.get("/api/v1/webhooks").json()["results"][0]["secret"] is None


def test_a_non_admin_sees_the_url_masked(alice_api, bob_api, webhook):
    assert alice_api.get(f"/api/v1/webhooks/{webhook.pk}").json()["url"].endswith("token=s3cret")
    assert bob_api.get(f"/api/v1/webhooks/{webhook.pk}").json()["url"].endswith("token=***")


def test_the_secret_can_be_given_rotated_and_patched(alice_api, webhook):
    old = webhook.secret
    rotated = alice_api.post(f"/api/v1/webhooks/{webhook.pk}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != old and rotated.json()["secret"].startswith("whsec_")
    patched = alice_api.patch(
        f"/api/v1/webhooks/{webhook.pk}", {"secret": "my-own-secret-1234"}, format="json"
    )
    assert patched.json()["secret"] == "my-own-secret-1234"
    short = alice_api.patch(f"/api/v1/webhooks/{webhook.pk}", {"secret": "short"}, format="json")
    assert short.status_code == 400 and "secret" in short.json()["fields"]


@pytest.mark.parametrize("client_name", ["bob_api", "viewer_api"])
def test_members_and_viewers_read_but_may_not_change(request, client_name, webhook, rule):
    api = request.getfixturevalue(client_name)
    assert api.get(f"/api/v1/alert-rules/{rule.pk}").status_code == 200
    assert api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries").status_code == 200
    refused = [
        api.post("/api/v1/alert-rules", RULE, format="json"),
        api.post("/api/v1/webhooks", WEBHOOK, format="json"),
        api.patch(f"/api/v1/alert-rules/{rule.pk}", {"name": "x"}, format="json"),
        api.delete(f"/api/v1/webhooks/{webhook.pk}"),
        api.post(f"/api/v1/webhooks/{webhook.pk}/rotate-secret"),
        api.post(f"/api/v1/webhooks/{webhook.pk}/test"),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.content
        assert answer.json()["code"] == "forbidden"
        assert "admins and owners" in answer.json()["error"]
    assert Webhook.objects.get().name == "Receiver" and not WebhookDelivery.objects.exists()


def test_anonymous_is_401_everywhere(webhook, rule):
    anonymous = APIClient()
    for url in (
        "/api/v1/alert-rules",
        f"/api/v1/alert-rules/{rule.pk}",
        "/api/v1/webhooks",
        f"/api/v1/webhooks/{webhook.pk}",
        f"/api/v1/webhooks/{webhook.pk}/deliveries",
    ):
        assert anonymous.get(url).status_code == 401, url
    assert anonymous.post(f"/api/v1/webhooks/{webhook.pk}/test").status_code == 401


def test_another_organizations_rules_and_webhooks_are_404(charlie_api, webhook, rule):
    for url in (
        f"/api/v1/alert-rules/{rule.pk}",
        f"/api/v1/webhooks/{webhook.pk}",
        f"/api/v1/webhooks/{webhook.pk}/deliveries",
    ):
        answer = charlie_api.get(url)
        assert answer.status_code == 404 and answer.json() == {
            "error": "Not found.",
            "code": "not_found",
        }
    assert charlie_api.patch(f"/api/v1/webhooks/{webhook.pk}", {}, format="json").status_code == 404
    assert charlie_api.delete(f"/api/v1/alert-rules/{rule.pk}").status_code == 404
    assert charlie_api.post(f"/api/v1/webhooks/{webhook.pk}/test").status_code == 404
    assert charlie_api.post(f"/api/v1/webhooks/{webhook.pk}/rotate-secret").status_code == 404
    assert charlie_api.get("/api/v1/webhooks").json()["count"] == 0
    assert charlie_api.get("/api/v1/alert-rules/999999999999999999").status_code == 404


def test_an_organization_filter_and_another_organizations_id(
    alice_api, charlie_api, rule, charlie_organization
):
    assert (
        alice_api.get(f"/api/v1/alert-rules?organization={rule.organization_id}").json()["count"]
        == 1
    )
    assert (
        alice_api.get(f"/api/v1/alert-rules?organization={charlie_organization.pk}").json()["count"]
        == 0
    )
    assert alice_api.get("/api/v1/alert-rules?organization=abc").status_code == 400
    made = alice_api.post(
        "/api/v1/alert-rules", {**RULE, "organization": charlie_organization.pk}, format="json"
    )
    assert made.status_code == 400 and "organization" in made.json()["fields"]


def test_another_organizations_camera_is_refused_without_saying_it_exists(
    alice_api, charlie_camera, webhook
):
    for answer in (
        alice_api.post(
            "/api/v1/alert-rules", {**RULE, "cameras": [charlie_camera.public_id]}, format="json"
        ),
        alice_api.patch(
            f"/api/v1/webhooks/{webhook.pk}", {"cameras": [charlie_camera.public_id]}, format="json"
        ),
        alice_api.post("/api/v1/alert-rules", {**RULE, "cameras": ["nosuchcamera"]}, format="json"),
    ):
        assert answer.status_code == 400
        message = answer.json()["fields"]["cameras"][0]
        assert "is not one of this organization's cameras" in message
    assert list(Webhook.objects.get().cameras.values_list("name", flat=True)) == ["Front door"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "x" * 81),
        ("name", ["a list"]),
        ("classes", [f"class{n}" for n in range(33)]),
        ("classes", "person"),
        ("classes", [{"a": 1}]),
        ("classes", ["x" * 65]),
        ("zones", [f"zone{n}" for n in range(17)]),
        ("zones", ["z" * 41]),
        ("min_confidence", 1.5),
        ("min_confidence", -0.1),
        ("min_confidence", "high"),
        ("min_duration_seconds", 86401),
        ("cooldown_seconds", -1),
        ("cooldown_seconds", 86401),
        ("cooldown_seconds", "soon"),
        ("quiet_hours_start", "25:00"),
        ("enabled", "maybe"),
        ("cameras", "cam"),
    ],
)
def test_bad_rule_fields_are_400_naming_the_field(alice_api, field, value):
    answer = alice_api.post("/api/v1/alert-rules", {**RULE, field: value}, format="json")
    assert answer.status_code == 400, (field, value, answer.content)
    assert answer.json()["code"] == "invalid"
    assert field in answer.json()["fields"]
    assert not AlertRule.objects.exists()


def test_quiet_hours_need_both_ends(alice_api, rule):
    answer = alice_api.post(
        "/api/v1/alert-rules", {**RULE, "quiet_hours_start": "22:00"}, format="json"
    )
    assert answer.status_code == 400 and "quiet_hours_end" in answer.json()["fields"]
    url = f"/api/v1/alert-rules/{rule.pk}"
    assert alice_api.patch(url, {"quiet_hours_end": "06:00"}, format="json").status_code == 400
    both = alice_api.patch(
        url, {"quiet_hours_start": "22:00", "quiet_hours_end": "06:00"}, format="json"
    )
    assert both.status_code == 200
    # Clearing one end of a rule that has both leaves one: refused too.
    assert alice_api.patch(url, {"quiet_hours_end": None}, format="json").status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "https://",
        "http://127.0.0.1:8000/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/hook",
        "http://2130706433/hook",
        "https://example.com/" + "a" * 500,
        "http://example.com:99999/",
    ],
)
def test_webhook_urls_are_checked(alice_api, url):
    answer = alice_api.post("/api/v1/webhooks", {**WEBHOOK, "url": url}, format="json")
    assert answer.status_code == 400, (url, answer.content)
    assert "url" in answer.json()["fields"]


def test_an_allowed_network_lets_a_private_url_through(alice_api, settings):
    import ipaddress

    settings.WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    answer = alice_api.post(
        "/api/v1/webhooks", {**WEBHOOK, "url": "http://127.0.0.1:8123/hook"}, format="json"
    )
    assert answer.status_code == 201
    named = alice_api.post(
        "/api/v1/webhooks",
        {**WEBHOOK, "url": "http://homeassistant:8123/api/webhook/x"},
        format="json",
    )
    assert named.status_code == 201  # names are checked when resolved, at each send


def test_malformed_and_non_object_bodies_are_400(alice_api, webhook):
    broken = alice_api.generic(
        "POST", "/api/v1/alert-rules", '{"name": ', content_type="application/json"
    )
    assert broken.status_code == 400 and broken.json()["code"] == "malformed"
    for body in ("[1, 2]", "12", '"name"'):
        for method, url in (
            ("POST", "/api/v1/webhooks"),
            ("PATCH", f"/api/v1/webhooks/{webhook.pk}"),
        ):
            answer = alice_api.generic(method, url, body, content_type="application/json")
            assert answer.status_code == 400, (method, body)
            assert answer.json()["code"] == "invalid"
    nul = alice_api.post("/api/v1/alert-rules", {**RULE, "name": "a\x00b"}, format="json")
    assert nul.status_code == 400 and "name" in nul.json()["fields"]


def test_an_oversized_body_is_413(alice_api, settings):
    settings.API_JSON_MAX_BYTES = 2048
    body = json.dumps({**RULE, "classes": ["x" * 60] * 40})
    answer = alice_api.generic("POST", "/api/v1/alert-rules", body, content_type="application/json")
    assert answer.status_code == 413
    assert not AlertRule.objects.exists()


def test_a_test_send_queues_a_test_delivery_shaped_like_an_alert(alice_api, webhook, front_door):
    answer = alice_api.post(f"/api/v1/webhooks/{webhook.pk}/test")
    assert answer.status_code == 202, answer.content
    delivery = WebhookDelivery.objects.get()
    assert answer.json()["id"] == str(delivery.pk)
    assert answer.json()["kind"] == "test" and answer.json()["status"] == "pending"
    assert delivery.alert is None and delivery.webhook == webhook
    payload = delivery.payload
    assert payload["type"] == "test" and payload["version"] == 1
    assert payload["webhook"] == {"id": webhook.pk, "name": "Receiver"}
    assert payload["event"]["camera"] == {"id": front_door.public_id, "name": "Front door"}
    assert payload["event"]["label"] == "person"
    assert set(payload["event"]["links"]) == {"page", "snapshot", "clip"}
    assert payload["snapshot"]["content_type"] == "image/jpeg"


def test_test_sends_are_rate_limited_per_user(alice_api, webhook, settings):
    settings.WEBHOOK_TESTS_PER_MINUTE = 2
    assert [
        alice_api.post(f"/api/v1/webhooks/{webhook.pk}/test").status_code for _ in range(2)
    ] == [
        202,
        202,
    ]
    limited = alice_api.post(f"/api/v1/webhooks/{webhook.pk}/test")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert WebhookDelivery.objects.count() == 2


def test_the_delivery_log_is_newest_first_paginated_and_scoped(
    alice_api, webhook, organization, charlie_api
):
    other = alice_api.post("/api/v1/webhooks", WEBHOOK, format="json").json()
    for _ in range(3):
        alice_api.post(f"/api/v1/webhooks/{webhook.pk}/test")
    alice_api.post(f"/api/v1/webhooks/{other['id']}/test")
    log = alice_api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries?limit=2").json()
    assert log["count"] == 3 and len(log["results"]) == 2 and log["next"]
    created = [row["created_at"] for row in log["results"]]
    assert created == sorted(created, reverse=True)
    first = log["results"][0]
    assert set(first) == {
        "id",
        "kind",
        "status",
        "attempts",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
        "response_status",
        "last_error",
        "alert",
        "event",
    }
    assert first["alert"] is None and first["event"] is None
    assert alice_api.get(f"/api/v1/webhooks/{other['id']}/deliveries").json()["count"] == 1
    assert alice_api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries?limit=0").status_code == 400
    assert charlie_api.get(f"/api/v1/webhooks/{webhook.pk}/deliveries").status_code == 404


def test_the_lists_read_in_a_few_queries(
    alice_api, organization, front_door, back_yard, django_assert_max_num_queries
):
    for number in range(5):
        alert_filter_create(
            model=Webhook,
            organization=organization,
            cameras=[front_door, back_yard],
            name=f"Hook {number}",
            url="https://example.com/hook",
        )
    with django_assert_max_num_queries(6):
        answer = alice_api.get("/api/v1/webhooks")
    assert answer.json()["count"] == 5
    assert answer.json()["results"][0]["cameras"] == sorted(
        [front_door.public_id, back_yard.public_id]
    )


def test_the_organization_must_be_named_by_a_member_of_several(alice_api, alice):
    from organizations.services import organization_create

    second = organization_create(name="Second Co", owner=alice)
    unnamed = alice_api.post("/api/v1/webhooks", WEBHOOK, format="json")
    assert unnamed.status_code == 400 and "say which" in unnamed.json()["fields"]["organization"][0]
    wrong_type = alice_api.post(
        "/api/v1/webhooks", {**WEBHOOK, "organization": "abc"}, format="json"
    )
    assert wrong_type.status_code == 400 and "organization" in wrong_type.json()["fields"]
    named = alice_api.post(
        "/api/v1/webhooks", {**WEBHOOK, "organization": second.pk}, format="json"
    )
    assert named.status_code == 201 and named.json()["organization"] == second.pk
