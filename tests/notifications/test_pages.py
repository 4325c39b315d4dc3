"""The notifications pages: the list, the forms, a webhook's log with Send test and Rotate."""

from __future__ import annotations

import pytest
from django.test import Client

from cameras.services import camera_update
from notifications.models import AlertRule, Webhook, WebhookDelivery
from notifications.services import alert_filter_create
from organizations.services import membership_add

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice, organization) -> Client:  # the owner
    return _client(alice)


@pytest.fixture
def bob_client(bob, organization) -> Client:  # a member
    return _client(bob)


@pytest.fixture
def charlie_client(charlie, charlie_organization) -> Client:
    return _client(charlie)


@pytest.fixture
def webhook(organization, front_door):
    return alert_filter_create(
        model=Webhook,
        organization=organization,
        cameras=[front_door],
        name="Receiver",
        url="https://receiver.example.com/hook?token=s3cret",
        classes=["person"],
        zones=["Driveway"],
    )


@pytest.fixture
def rule(organization, back_yard):
    return alert_filter_create(
        model=AlertRule,
        organization=organization,
        cameras=[back_yard],
        name="Yard at night",
        classes=["person", "car"],
        quiet_hours_start="07:00",
        quiet_hours_end="19:00",
    )


def test_the_list_says_each_rules_filters_in_words(
    alice_client, rule, webhook, django_assert_max_num_queries
):
    with django_assert_max_num_queries(10):
        page = alice_client.get("/notifications/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "person or car on Back yard" in text
    assert "quiet 07:00–19:00" in text
    assert "person on Front door, in Driveway" in text
    assert 'id="rule-add-' in text and 'id="webhook-add-' in text


def test_the_list_tells_what_to_do_when_empty(alice_client, bob_client):
    assert "No alert rules yet. Add one" in alice_client.get("/notifications/").content.decode()
    member = bob_client.get("/notifications/").content.decode()
    assert "An admin of Alice Co can add one" in member
    assert 'id="rule-add-' not in member


def test_the_pages_need_a_log_in(client, webhook):
    for url in (
        "/notifications/",
        f"/notifications/webhooks/{webhook.pk}/",
        "/notifications/rules/add/",
    ):
        answer = client.get(url)
        assert answer.status_code == 302 and answer["Location"].startswith("/login/")


def test_an_admin_adds_a_rule_with_checkboxes_and_free_text(alice_client, organization, front_door):
    camera_update(camera=front_door, zones=[{"name": "Porch", "points": [[0, 0], [1, 0], [1, 1]]}])
    form = alice_client.get(f"/notifications/rules/add/?organization={organization.pk}")
    assert form.status_code == 200
    text = form.content.decode()
    assert "Front door" in text and "Porch (Front door)" in text and 'value="motion"' in text
    answer = alice_client.post(
        f"/notifications/rules/add/?organization={organization.pk}",
        {
            "name": "Porch people",
            "enabled": "on",
            "cameras": [front_door.pk],
            "classes": ["person"],
            "more_classes": "car, dog, car",
            "zones": ["Porch"],
            "min_confidence": "0.5",
            "min_duration_seconds": "2",
            "cooldown_seconds": "120",
            "notify_browser": "on",
        },
    )
    assert answer.status_code == 302 and answer["Location"] == "/notifications/"
    rule = AlertRule.objects.get()
    assert rule.classes == ["person", "car", "dog"] and rule.zones == ["Porch"]
    assert list(rule.cameras.all()) == [front_door]
    assert rule.notify_browser and not rule.notify_mqtt


def test_the_form_shows_its_errors(alice_client, organization, charlie_camera):
    answer = alice_client.post(
        f"/notifications/rules/add/?organization={organization.pk}",
        {
            "name": "",
            "cameras": [charlie_camera.pk],
            "min_confidence": "2",
            "cooldown_seconds": "60",
            "quiet_hours_start": "22:00",
        },
    )
    assert answer.status_code == 400
    text = answer.content.decode()
    assert 'data-error-for="name"' in text
    assert 'data-error-for="cameras"' in text  # another organization's camera is no choice
    assert 'data-error-for="min_confidence"' in text
    assert "Give both ends of the quiet hours, or neither." in text
    assert not AlertRule.objects.exists()


def test_a_webhook_url_is_policy_checked_on_the_page(alice_client, organization):
    answer = alice_client.post(
        f"/notifications/webhooks/add/?organization={organization.pk}",
        {"name": "Local", "url": "http://127.0.0.1/hook", "cooldown_seconds": "60"},
    )
    assert answer.status_code == 400
    assert "not allowed by policy" in answer.content.decode()
    added = alice_client.post(
        f"/notifications/webhooks/add/?organization={organization.pk}",
        {"name": "HA", "url": "https://ha.example.com/api/webhook/x", "cooldown_seconds": "60"},
    )
    webhook = Webhook.objects.get()
    assert added["Location"] == f"/notifications/webhooks/{webhook.pk}/"


def test_an_admin_edits_and_deletes_a_rule(alice_client, rule):
    url = f"/notifications/rules/{rule.pk}/"
    form = alice_client.get(url).content.decode()
    assert 'value="car"' in form  # a typed class is shown back in "Other classes"
    answer = alice_client.post(
        url, {"name": "Renamed", "more_classes": "car", "cooldown_seconds": "10"}
    )
    assert answer.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.classes, rule.enabled) == ("Renamed", ["car"], False)
    assert rule.cameras.count() == 0
    assert alice_client.post(f"{url}delete").status_code == 302
    assert not AlertRule.objects.exists()


def test_a_member_sees_read_only_forms_and_may_not_change(bob_client, rule, webhook):
    form = bob_client.get(f"/notifications/rules/{rule.pk}/").content.decode()
    assert 'id="read-only"' in form and 'id="save"' not in form
    webhook_form = bob_client.get(f"/notifications/webhooks/{webhook.pk}/edit/").content.decode()
    assert "token=***" in webhook_form and "s3cret" not in webhook_form
    assert bob_client.post(f"/notifications/rules/{rule.pk}/", {"name": "x"}).status_code == 403
    assert bob_client.get("/notifications/rules/add/").status_code == 403
    for action in ("delete", "rotate-secret", "test"):
        assert bob_client.post(f"/notifications/webhooks/{webhook.pk}/{action}").status_code == 403
    assert Webhook.objects.get().name == "Receiver" and not WebhookDelivery.objects.exists()


def test_another_organization_gets_404(charlie_client, rule, webhook, organization):
    for url in (
        f"/notifications/rules/{rule.pk}/",
        f"/notifications/webhooks/{webhook.pk}/",
        f"/notifications/webhooks/{webhook.pk}/edit/",
        f"/notifications/rules/add/?organization={organization.pk}",
    ):
        assert charlie_client.get(url).status_code == 404, url
    for url in (
        f"/notifications/webhooks/{webhook.pk}/test",
        f"/notifications/webhooks/{webhook.pk}/rotate-secret",
        f"/notifications/rules/{rule.pk}/delete",
    ):
        assert charlie_client.post(url).status_code == 404, url
    assert "Alice Co" not in charlie_client.get("/notifications/").content.decode()


def test_the_webhook_page_shows_the_secret_to_admins_only(alice_client, bob_client, webhook):
    page = alice_client.get(f"/notifications/webhooks/{webhook.pk}/").content.decode()
    assert webhook.secret in page and 'id="secret-copy"' in page and 'id="send-test"' in page
    assert "Nothing sent yet" in page
    member = bob_client.get(f"/notifications/webhooks/{webhook.pk}/").content.decode()
    assert webhook.secret not in member and "s3cret" not in member
    assert 'id="send-test"' not in member


def test_send_test_queues_a_delivery_shown_in_the_log(
    alice_client, webhook, settings, django_assert_max_num_queries
):
    settings.WEBHOOK_TESTS_PER_MINUTE = 1
    answer = alice_client.post(f"/notifications/webhooks/{webhook.pk}/test", follow=True)
    assert "Test queued" in answer.content.decode()
    delivery = WebhookDelivery.objects.get()
    assert delivery.kind == "test"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=2, last_error="HTTP 500 from the receiver", response_status=500
    )
    with django_assert_max_num_queries(8):
        page = alice_client.get(f"/notifications/webhooks/{webhook.pk}/")
    text = page.content.decode()
    assert f'id="delivery-{delivery.pk}"' in text
    assert 'class="badge pending"' in text and "HTTP 500 from the receiver" in text
    again = alice_client.post(f"/notifications/webhooks/{webhook.pk}/test", follow=True)
    assert "Too many test sends" in again.content.decode()
    assert WebhookDelivery.objects.count() == 1


def test_rotate_gives_a_new_secret(alice_client, webhook):
    old = webhook.secret
    alice_client.post(f"/notifications/webhooks/{webhook.pk}/rotate-secret")
    webhook.refresh_from_db()
    assert webhook.secret != old and webhook.secret.startswith("whsec_")


def test_the_actions_need_the_csrf_token(alice, webhook):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    base = f"/notifications/webhooks/{webhook.pk}"
    for action in ("test", "rotate-secret", "delete"):
        assert client.post(f"{base}/{action}").status_code == 403
    assert not WebhookDelivery.objects.exists() and Webhook.objects.exists()
    client.get(f"{base}/")
    token = client.cookies["csrftoken"].value
    assert client.post(f"{base}/test", {"csrfmiddlewaretoken": token}).status_code == 302
    assert WebhookDelivery.objects.count() == 1


def test_several_organizations_choose_one_first(alice_client, alice, django_user_model):
    from organizations.services import organization_create

    organization_create(name="Second Co", owner=alice)
    page = alice_client.get("/notifications/webhooks/add/")
    assert page.status_code == 200 and 'id="organization-choices"' in page.content.decode()
    assert alice_client.get("/notifications/webhooks/add/?organization=abc").status_code == 404


def test_a_viewer_reads_the_list(organization, django_user_model, rule):
    dora = django_user_model.objects.create_user("dora", "dora@example.org", "dora-password")
    membership_add(organization=organization, user=dora, role="viewer")
    page = _client(dora).get("/notifications/")
    assert page.status_code == 200 and "Yard at night" in page.content.decode()
