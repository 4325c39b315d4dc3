"""GET /api/v1/alerts and the /alerts/ page: scoped to the user's organizations, filtered,
paginated like the other lists, and strict about what a query may hold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from notifications.models import Alert, AlertRule, Webhook, WebhookDelivery
from organizations.services import membership_add
from tests.events.conftest import event_make

pytestmark = pytest.mark.django_db


def alert_make(camera, *, source, at, label="person", zones=(), snapshot=False) -> Alert:
    event = event_make(camera, label=label, at=at, track_id=7)
    if snapshot:
        event.snapshot.save("alert.jpg", ContentFile(b"\xff\xd8 a JPEG"), save=True)
    for zone in zones:
        event.zones.create(zone=zone, entered_at=at)
    alert = Alert.objects.create(
        organization_id=camera.organization_id,
        event=event,
        rule=source if isinstance(source, AlertRule) else None,
        webhook=source if isinstance(source, Webhook) else None,
        camera=camera,
        label=label,
        created_at=at,
    )
    if isinstance(source, Webhook):
        WebhookDelivery.objects.create(
            webhook=source,
            alert=alert,
            payload={},
            created_at=at,
            next_attempt_at=at,
            status=WebhookDelivery.Status.FAILED,
            attempts=3,
            last_error="Timed out after 5 s",
        )
    return alert


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def people(organization):
    return AlertRule.objects.create(organization=organization, name="People")


@pytest.fixture
def quiet(organization):
    return AlertRule.objects.create(
        organization=organization, name="Log only", notify_browser=False
    )


@pytest.fixture
def hook(organization):
    return Webhook.objects.create(
        organization=organization, name="Home server", url="https://hooks.example.org/in"
    )


@pytest.fixture
def alerts(front_door, back_yard, people, quiet, hook, now, media_root):
    return {
        "front": alert_make(
            front_door,
            source=people,
            at=now - timedelta(minutes=1),
            zones=["Driveway"],
            snapshot=True,
        ),
        "back": alert_make(back_yard, source=people, at=now - timedelta(hours=2), label="car"),
        "quiet": alert_make(front_door, source=quiet, at=now - timedelta(minutes=3)),
        "hook": alert_make(front_door, source=hook, at=now - timedelta(minutes=2)),
    }


@pytest.fixture
def charlie_alert(charlie_organization, charlie_camera, now):
    rule = AlertRule.objects.create(organization=charlie_organization, name="Gate")
    return alert_make(charlie_camera, source=rule, at=now - timedelta(seconds=30))


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["alert"]["id"] for item in response.json()["results"]]


def test_it_lists_the_organizations_alerts_newest_first_in_the_bells_shape(
    alice_api, alerts, charlie_alert, front_door
):
    response = alice_api.get("/api/v1/alerts")
    assert ids(response) == [
        alerts["front"].pk,
        alerts["hook"].pk,
        alerts["quiet"].pk,
        alerts["back"].pk,
    ]
    body = response.json()
    assert body["count"] == 4 and body["next"] is None
    front = body["results"][0]
    event = alerts["front"].event
    assert front["type"] == "alert"
    assert front["rule"] == {"id": alerts["front"].rule_id, "name": "People"}
    assert front["event"]["camera"] == {"id": front_door.public_id, "name": "Front door"}
    assert front["event"]["label"] == "person"
    assert front["event"]["track_id"] == 7
    assert front["event"]["zones"] == ["Driveway"]
    assert front["snapshot_url"] == f"/api/v1/events/{event.pk}/snapshot"
    assert front["url"] == f"/events/{event.pk}"
    assert "delivery" not in front
    hook = body["results"][1]
    assert hook["webhook"]["name"] == "Home server"
    assert hook["delivery"]["status"] == "failed"
    assert hook["delivery"]["attempts"] == 3
    assert hook["delivery"]["last_error"] == "Timed out after 5 s"


def test_another_organizations_alerts_are_never_listed(
    alice_api, charlie_api, alerts, charlie_alert, charlie_organization
):
    assert charlie_alert.pk not in ids(alice_api.get("/api/v1/alerts"))
    assert ids(charlie_api.get("/api/v1/alerts")) == [charlie_alert.pk]
    # Asking for the other organization by id narrows within one's own: nothing.
    assert ids(alice_api.get(f"/api/v1/alerts?organization={charlie_organization.pk}")) == []
    assert ids(charlie_api.get(f"/api/v1/alerts?rule={alerts['front'].rule_id}")) == []
    assert ids(charlie_api.get(f"/api/v1/alerts?camera={alerts['front'].camera.public_id}")) == []


def test_a_viewer_gets_the_organizations_alerts_too(alerts, organization, django_user_model):
    dave = django_user_model.objects.create_user("dave", "dave@example.org", "dave-password")
    membership_add(organization=organization, user=dave, role="viewer")
    client = APIClient()
    client.force_authenticate(dave)
    assert len(ids(client.get("/api/v1/alerts?browser=true"))) == 2


def test_the_filters_narrow_the_list(alice_api, alerts, back_yard, hook, people, organization, now):
    assert ids(alice_api.get("/api/v1/alerts?browser=true")) == [
        alerts["front"].pk,
        alerts["back"].pk,
    ]
    assert ids(alice_api.get(f"/api/v1/alerts?camera={back_yard.public_id}")) == [alerts["back"].pk]
    assert ids(alice_api.get(f"/api/v1/alerts?webhook={hook.pk}")) == [alerts["hook"].pk]
    assert ids(alice_api.get(f"/api/v1/alerts?rule={people.pk}")) == [
        alerts["front"].pk,
        alerts["back"].pk,
    ]
    assert len(ids(alice_api.get(f"/api/v1/alerts?organization={organization.pk}"))) == 4
    since = (now - timedelta(minutes=2)).isoformat()
    until = (now - timedelta(minutes=1)).isoformat()
    # `since` included, `until` not.
    assert ids(alice_api.get("/api/v1/alerts", {"since": since, "until": until})) == [
        alerts["hook"].pk
    ]


def test_it_pages_like_the_other_lists(alice_api, alerts):
    first = alice_api.get("/api/v1/alerts?limit=2").json()
    assert first["count"] == 4 and len(first["results"]) == 2
    second = alice_api.get(first["next"]).json()
    assert [item["alert"]["id"] for item in second["results"]] == [
        alerts["quiet"].pk,
        alerts["back"].pk,
    ]
    assert alice_api.get("/api/v1/alerts?limit=0").status_code == 400
    assert alice_api.get("/api/v1/alerts?limit=201").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday-ish",
        "since=0001-01-01T00:00:00Z",
        "until=9999-12-31T23:59:59Z",
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "organization=0",
        "organization=-1",
        "organization=99999999999999999999999",
        "organization=%C2%B2",
        "rule=abc",
        "webhook=1.5",
        "rule=1&webhook=1",
        "camera=" + "x" * 33,
        "camera=front%20door",
        "camera=a%00b",
        "since=2026-01-01%00",
        "browser=maybe",
        "offset=-1",
    ],
)
def test_bad_filters_are_400_saying_why(alice_api, alerts, query):
    response = alice_api.get(f"/api/v1/alerts?{query}")
    assert response.status_code == 400, (query, response.content)
    assert "error" in response.json()


def test_an_oversized_query_is_refused_not_run(alice_api, alerts):
    response = alice_api.get("/api/v1/alerts", {"camera": "c" * 100_000})
    assert response.status_code == 400


def test_anonymous_callers_are_refused(alerts):
    response = APIClient().get("/api/v1/alerts")
    assert response.status_code in (401, 403)
    assert "error" in response.json()
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert bad_token.get("/api/v1/alerts").status_code in (401, 403)


# --- the page ------------------------------------------------------------------------------


def page_client(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=f"{username}-password")
    return client


def test_the_page_shows_each_alert_with_its_snapshot_camera_zones_and_source(alerts, charlie_alert):
    response = page_client("alice").get("/alerts/")
    assert response.status_code == 200
    html = response.content.decode()
    for alert in alerts.values():
        assert f'data-alert="{alert.pk}"' in html
    assert f'data-alert="{charlie_alert.pk}"' not in html
    assert f'src="/api/v1/events/{alerts["front"].event_id}/snapshot"' in html
    assert f'src="/api/v1/events/{alerts["back"].event_id}/snapshot"' not in html
    assert "Driveway" in html and "Front door" in html and "Rule: People" in html
    assert "Webhook: Home server" in html
    assert "given up · 3 attempts" in html
    assert 'title="Timed out after 5 s"' in html


def test_the_page_filters_in_the_events_pages_words(alerts, back_yard, now):
    client = page_client("alice")
    html = client.get(f"/alerts/?camera={back_yard.public_id}").content.decode()
    assert f'data-alert="{alerts["back"].pk}"' in html
    assert f'data-alert="{alerts["front"].pk}"' not in html
    since = (now - timedelta(minutes=2)).isoformat()
    html = client.get("/alerts/", {"since": since}).content.decode()
    assert f'data-alert="{alerts["front"].pk}"' in html
    assert f'data-alert="{alerts["quiet"].pk}"' not in html
    html = client.get("/alerts/?since=today").content.decode()
    listed = [alert for alert in alerts.values() if f'data-alert="{alert.pk}"' in html]
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    assert listed == [alert for alert in alerts.values() if alert.created_at >= midnight]


def test_bad_page_filters_list_nothing_and_say_why(alerts):
    response = page_client("alice").get("/alerts/?since=0001-01-01T00:00:00&rule=abc")
    assert response.status_code == 200
    html = response.content.decode()
    assert "data-alert=" not in html
    assert "Since: since must be between" in html
    for query in ("camera=a%00b", "since=%00", "rule=%C2%B2", "since=" + "9" * 5000):
        response = page_client("alice").get(f"/alerts/?{query}")
        # A NUL is refused by the site's middleware before the view; the rest list nothing.
        assert response.status_code == (400 if "%00" in query else 200), query
        assert "data-alert=" not in response.content.decode(), query


def test_the_page_has_an_empty_state_and_needs_a_log_in(charlie_organization):
    html = page_client("charlie").get("/alerts/").content.decode()
    assert 'id="alerts-empty"' in html and 'href="/notifications/"' in html
    response = Client().get("/alerts/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_every_logged_in_page_has_the_bell(organization):
    html = page_client("bob").get("/").content.decode()
    assert 'id="alerts-bell"' in html and "js/alerts_bell.js" in html
    assert 'href="/alerts/"' in html and 'href="/notifications/"' in html
    assert 'id="alerts-bell"' not in Client().get("/login/").content.decode()
