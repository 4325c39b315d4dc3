"""In Chromium against a live daphne: an admin adds a webhook with the form, copies its secret
to the clipboard and presses Send test, which lands in the delivery log."""

from __future__ import annotations

import pytest

from notifications.models import Webhook, WebhookDelivery
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread (see tests/events).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def test_an_admin_adds_a_webhook_copies_its_secret_and_sends_a_test(
    page, live_daphne, alice, organization, front_door
):
    server = live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/notifications/")
    assert "No webhooks yet" in page.inner_text("main")
    page.click(f"#webhook-add-{organization.pk}")
    page.fill("#id_name", "Home Assistant")
    page.fill("#id_url", "https://ha.example.com/api/webhook/front")
    page.check("text=Front door")
    page.check("#id_classes input[value=person]")
    page.click("#save")
    page.wait_for_selector("#webhook-secret")
    webhook = Webhook.objects.get()
    assert list(webhook.cameras.all()) == [front_door] and webhook.classes == ["person"]
    assert page.inner_text("#secret-value") == webhook.secret

    page.click("#secret-copy")
    page.wait_for_function("document.getElementById('secret-copy').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == webhook.secret

    page.click("#send-test")
    page.wait_for_selector(".flash li")
    assert "Test queued" in page.inner_text(".flash")
    delivery = WebhookDelivery.objects.get()
    row = page.inner_text(f"#delivery-{delivery.pk}")
    assert "test" in row and "Pending" in row
