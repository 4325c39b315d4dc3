"""The admin for rules, webhooks, alerts and deliveries: scoped for staff, read-only where it
must be, the API's checks, and "retry now"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import AlertRule, Webhook, WebhookDelivery
from notifications.services import alert_filter_create, webhook_test_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def root_client(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    client.login(username="root", password="root-password")
    return client


@pytest.fixture
def webhook(organization, front_door):
    return alert_filter_create(
        model=Webhook,
        organization=organization,
        cameras=[front_door],
        name="Receiver",
        url="https://receiver.example.com/hook",
    )


@pytest.fixture
def charlie_webhook(charlie_organization):
    return alert_filter_create(
        model=Webhook,
        organization=charlie_organization,
        cameras=[],
        name="Charlie's hook",
        url="https://charlie.example.com/hook",
    )


@pytest.fixture
def staff_client(client, bob, organization):
    from django.contrib.auth.models import Permission

    bob.is_staff = True
    bob.save()
    bob.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="notifications", codename__startswith="view"
        )
    )
    client.force_login(bob)
    return client


def test_every_list_and_change_page_renders(root_client, webhook, alice):
    delivery = webhook_test_send(webhook, alice)
    for url in (
        "/admin/notifications/alertrule/",
        "/admin/notifications/alertrule/add/",
        "/admin/notifications/webhook/",
        f"/admin/notifications/webhook/{webhook.pk}/change/",
        "/admin/notifications/alert/",
        "/admin/notifications/webhookdelivery/",
        f"/admin/notifications/webhookdelivery/{delivery.pk}/change/",
    ):
        assert root_client.get(url).status_code == 200, url


def test_the_secret_is_read_only_after_creation(root_client, webhook):
    page = root_client.get(f"/admin/notifications/webhook/{webhook.pk}/change/").content.decode()
    assert webhook.secret in page and 'name="secret"' not in page
    assert 'name="secret"' in root_client.get("/admin/notifications/webhook/add/").content.decode()


def test_the_admin_applies_the_apis_checks(root_client, organization, charlie_camera):
    answer = root_client.post(
        "/admin/notifications/alertrule/add/",
        {
            "organization": organization.pk,
            "name": "Bad",
            "enabled": "on",
            "cameras": [charlie_camera.pk],
            "classes": '["person"]',
            "zones": "[]",
            "min_confidence": "0",
            "min_duration_seconds": "0",
            "cooldown_seconds": "60",
            "quiet_hours_start": "22:00",
        },
    )
    assert answer.status_code == 200
    errors = str(answer.context["adminform"].form.errors)
    assert "Not cameras of Alice Co" in errors and "both ends of the quiet hours" in errors
    assert not AlertRule.objects.exists()
    hook = root_client.post(
        "/admin/notifications/webhook/add/",
        {
            "organization": organization.pk,
            "name": "Local",
            "url": "http://127.0.0.1/hook",
            "secret": "whsec_given_one_1234",
            "classes": "[]",
            "zones": "[]",
            "min_confidence": "0",
            "min_duration_seconds": "0",
            "cooldown_seconds": "60",
        },
    )
    assert "not allowed by policy" in str(hook.context["adminform"].form.errors)
    assert not Webhook.objects.exists()


def test_staff_see_their_organizations_rows_only_read_only_and_no_secret(
    staff_client, webhook, charlie_webhook, bob
):
    listed = staff_client.get("/admin/notifications/webhook/").content.decode()
    assert "Receiver" in listed and "Charlie&#x27;s hook" not in listed
    page = staff_client.get(f"/admin/notifications/webhook/{webhook.pk}/change/")
    assert page.status_code == 200 and webhook.secret not in page.content.decode()
    assert (
        staff_client.get(f"/admin/notifications/webhook/{charlie_webhook.pk}/change/").status_code
        == 302
    )
    assert staff_client.get("/admin/notifications/webhook/add/").status_code == 403
    webhook_test_send(charlie_webhook, bob)
    deliveries = staff_client.get("/admin/notifications/webhookdelivery/").content.decode()
    assert "Charlie" not in deliveries
    assert "retry_now" not in deliveries  # only superusers retry


def test_retry_now_makes_deliveries_due_again(root_client, webhook, alice):
    delivery = webhook_test_send(webhook, alice)
    later = timezone.now() + timedelta(hours=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=later, claimed_until=later
    )
    answer = root_client.post(
        "/admin/notifications/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [str(delivery.pk)]},
        follow=True,
    )
    assert "1 deliveries will be sent again at once." in answer.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.next_attempt_at <= timezone.now() and delivery.claimed_until is None
