"""The events pages, the activity charts on the dashboard, and the admin."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.test import Client

from events.models import EventZone
from events.recording import snapshot_jpeg
from events.templatetags.activity_charts import chart_since
from organizations.services import membership_add
from tests.events.conftest import event_make, session_make

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice, organization):
    return logged_in(alice)


@pytest.fixture
def charlie_client(charlie, charlie_organization):
    return logged_in(charlie)


def test_the_events_page_needs_a_login(front_door):
    response = Client().get("/events/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_the_events_page_shows_thumbnails_and_details(alice_client, front_door, media_root):
    event = event_make(front_door, label="person", at=T)
    jpeg = snapshot_jpeg(
        np.zeros((48, 64, 3), np.uint8), label="person", boxes=[([1, 1, 9, 9], 0.8)]
    )
    event.snapshot.save("s.jpg", ContentFile(jpeg), save=True)
    event_make(front_door, label="car", at=T + timedelta(minutes=1))
    html = alice_client.get("/events/").content.decode()
    assert f'src="/api/v1/events/{event.pk}/snapshot"' in html
    assert "no snapshot" in html
    assert "2 events" in html
    assert f'href="/events/{event.pk}"' in html


def test_the_events_page_filters_by_camera_class_and_dates(alice_client, front_door, back_yard):
    event_make(front_door, label="person", at=T)
    event_make(back_yard, label="car", at=T)
    event_make(front_door, label="person", at=T + timedelta(days=2))

    def shown(**params) -> str:
        return alice_client.get("/events/", params).content.decode()

    assert "1 event match" in shown(camera=back_yard.public_id)
    assert "2 events match" in shown(label="person")
    assert "2 events match" in shown(**{"class": "person"})  # the API's name works too
    assert "2 events match" in shown(date_from="2026-11-20", date_to="2026-11-20")
    assert "1 event match" in shown(date_from="2026-11-21")
    assert "No events match these filters" in shown(label="person", date_to="2026-11-19")


def test_bad_filters_are_shown_not_crashed_on(alice_client, front_door):
    event_make(front_door, label="person", at=T)
    html = alice_client.get(
        "/events/", {"date_from": "2026-11-22", "date_to": "2026-11-20"}
    ).content.decode()
    assert "The start date is after the end date." in html
    html = alice_client.get(
        "/events/", {"camera": "not-mine", "date_from": "garbage"}
    ).content.decode()
    assert 'class="error"' in html


def test_the_events_page_takes_the_apis_since_until_session_and_organization(
    alice, alice_client, front_door, back_yard, charlie_camera
):
    session = session_make(front_door, at=T, minutes=20, counts={"person": 1})
    event_make(front_door, label="person", at=T, session=session)
    event_make(front_door, label="person", at=T + timedelta(minutes=30))
    event_make(back_yard, label="car", at=T + timedelta(hours=1))

    def shown(**params) -> str:
        return alice_client.get("/events/", params).content.decode()

    # `until` is exclusive, as in the API: an event starting at it is not counted.
    html = shown(since="2026-11-20T12:00:00Z", until="2026-11-20T13:00:00Z")
    assert "2 events match" in html and 'id="window-filter"' in html
    assert "1 event match" in shown(since="2026-11-20T12:10:00Z", until="2026-11-20T13:00:00Z")
    assert "1 event match" in shown(**{"class": "person", "since": "2026-11-20T12:10:00+00:00"})
    assert "1 event match" in shown(session=session.pk)
    # Both kinds of bounds: the window is their overlap.
    assert "No events match" in shown(date_from="2026-11-21", until="2026-11-20T13:00:00Z")
    # A class nothing was seen as is a filter with no rows (not an error showing everything).
    html = shown(**{"class": "face"})
    assert "No events match" in html and 'class="error"' not in html
    # Alice in a second organization: `organization` keeps its events out.
    membership_add(organization=charlie_camera.organization, user=alice, role="viewer")
    event_make(charlie_camera, label="person", at=T)
    assert "4 events" in shown()
    assert "3 events match" in shown(organization=front_door.organization_id)
    assert "1 event match" in shown(organization=charlie_camera.organization_id)


def test_bad_window_filters_are_shown_not_crashed_on(
    alice_client, charlie_organization, front_door
):
    event_make(front_door, label="person", at=T)
    for params in (
        {"since": "yesterday"},
        {"until": "0001-01-01T00:00:00Z"},
        {"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"},
        {"session": "-1"},
        {"session": "9" * 40},
        {"organization": "x"},
        {"class": "x" * 500},
    ):
        response = alice_client.get("/events/", params)
        assert response.status_code == 200, params
        assert 'class="error"' in response.content.decode(), params
    # Charlie's organization filters Alice's events down to none.
    html = alice_client.get("/events/", {"organization": charlie_organization.pk}).content.decode()
    assert "No events match these filters" in html


def test_the_events_page_paginates_and_keeps_the_filters(alice_client, front_door):
    for minute in range(30):
        event_make(front_door, label="person", at=T + timedelta(minutes=minute))
    html = alice_client.get("/events/", {"label": "person"}).content.decode()
    assert "Page 1 of 2" in html
    assert "?label=person&amp;page=2" in html
    assert (
        "Page 2 of 2"
        in alice_client.get("/events/", {"label": "person", "page": 2}).content.decode()
    )


def test_the_events_page_costs_a_fixed_number_of_queries(
    alice_client, front_door, django_assert_max_num_queries
):
    for minute in range(30):
        event_make(front_door, label="person", at=T + timedelta(minutes=minute))
    # Among them the user's organizations' ids, for the class filter's index walk.
    with django_assert_max_num_queries(9):
        alice_client.get("/events/")


def test_an_empty_events_page_says_how_events_appear(alice_client, front_door):
    html = alice_client.get("/events/").content.decode()
    assert "No events yet" in html


def test_charlie_sees_none_of_alices_events_on_the_pages(charlie_client, front_door):
    event = event_make(front_door, label="person", at=T)
    html = charlie_client.get("/events/").content.decode()
    assert "Front door" not in html and "No events yet" in html
    assert charlie_client.get(f"/events/{event.pk}").status_code == 404


def test_the_detail_page_shows_times_confidence_and_the_camera(alice_client, front_door):
    event = event_make(front_door, label="person", at=T, confidence=0.875)
    html = alice_client.get(f"/events/{event.pk}").content.decode()
    assert "0.875" in html
    assert "2026-11-20 12:00:00" in html
    assert f'href="/cameras/{front_door.public_id}/"' in html
    assert "No snapshot was stored" in html


def test_an_ongoing_event_is_marked_as_such(alice_client, front_door):
    event = event_make(front_door, label="person", at=T, ongoing=True)
    assert "ongoing" in alice_client.get(f"/events/{event.pk}").content.decode()


def test_the_dashboard_draws_the_activity_chart(alice_client, front_door):
    now = datetime.now(UTC)
    event_make(front_door, label="person", at=now - timedelta(minutes=3))
    event_make(front_door, label="person", at=now - timedelta(hours=2))
    event_make(front_door, label="motion", at=now - timedelta(hours=2))
    event_make(front_door, label="person", at=now - timedelta(hours=30))  # outside the chart
    html = alice_client.get("/").content.decode()
    assert '<figure class="activity-chart" data-total="3">' in html
    assert html.count('<rect class="bar"') == 3
    assert "person 2" in html and "motion 1" in html


def test_the_dashboard_chart_has_an_empty_state(alice_client, front_door):
    html = alice_client.get("/").content.decode()
    assert "No events in the last 24 hours." in html


def test_the_admin_lists_events_with_previews(admin_client, front_door, media_root):
    event = event_make(front_door, label="person", at=T)
    jpeg = snapshot_jpeg(
        np.zeros((48, 64, 3), np.uint8), label="person", boxes=[([1, 1, 9, 9], 0.8)]
    )
    event.snapshot.save("s.jpg", ContentFile(jpeg), save=True)
    html = admin_client.get("/admin/events/detectionevent/").content.decode()
    snapshot_url = f"/admin/events/detectionevent/{event.pk}/snapshot.jpg"
    assert f'src="{snapshot_url}"' in html
    # The superuser is no member of Alice's organization; the preview loads all the same.
    preview = admin_client.get(snapshot_url)
    assert preview.status_code == 200
    assert preview["Content-Type"] == "image/jpeg"
    assert b"".join(preview.streaming_content) == jpeg
    assert admin_client.get(f"/admin/events/detectionevent/{event.pk}/change/").status_code == 200
    assert admin_client.get("/admin/events/detectionevent/", {"q": "Front"}).status_code == 200
    assert admin_client.get("/admin/events/camerasession/").status_code == 200


def test_admin_snapshot_previews_are_refused_to_people_outside_the_admin(
    alice_client, front_door, media_root
):
    event = event_make(front_door, label="person", at=T)
    event.snapshot.save("s.jpg", ContentFile(b"\xff\xd8 not shown"), save=True)
    response = alice_client.get(f"/admin/events/detectionevent/{event.pk}/snapshot.jpg")
    # Alice is a member but not staff: the admin sends her to its login page.
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_staff_who_are_not_superusers_see_only_their_organizations_events_and_cannot_edit_them(
    charlie, front_door, charlie_camera, media_root
):
    from django.contrib.auth.models import Permission

    # Charlie is staff with the admin's view permissions, and a member of his own organization.
    charlie.is_staff = True
    charlie.save()
    charlie.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_detectionevent", "change_detectionevent", "view_camerasession"]
        )
    )
    alices = event_make(front_door, label="person", at=T)
    alices.snapshot.save("a.jpg", ContentFile(b"\xff\xd8 alice's"), save=True)
    his = event_make(charlie_camera, label="car", at=T)
    client = Client()
    client.force_login(charlie)
    listing = client.get("/admin/events/detectionevent/").content.decode()
    assert f"/admin/events/detectionevent/{his.pk}/" in listing
    assert f"/admin/events/detectionevent/{alices.pk}/" not in listing
    # The filters do not name Alice's organization or camera either.
    assert "Alice Co" not in listing and front_door.name not in listing
    assert client.get(f"/admin/events/detectionevent/{alices.pk}/snapshot.jpg").status_code == 404
    assert client.get(f"/admin/events/detectionevent/{alices.pk}/change/").status_code == 302
    sessions = client.get("/admin/events/camerasession/").content.decode()
    assert front_door.name not in sessions
    # His own event is there to read, not to change.
    page = client.get(f"/admin/events/detectionevent/{his.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()


def test_an_admin_snapshot_url_with_a_huge_id_is_no_server_error(admin_client):
    # <int:> let it through to the database (OverflowError on SQLite); <id:> does not match, and
    # the admin answers it like any other unknown object.
    response = admin_client.get(f"/admin/events/detectionevent/{10**25}/snapshot.jpg", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain


def test_the_camera_page_draws_that_cameras_activity_chart(alice_client, front_door, back_yard):
    now = datetime.now(UTC)
    event_make(front_door, label="person", at=now - timedelta(minutes=3))
    event_make(back_yard, label="car", at=now - timedelta(minutes=3))
    html = alice_client.get(f"/cameras/{front_door.public_id}/").content.decode()
    assert '<figure class="activity-chart" data-total="1">' in html
    assert "person 1" in html and "car 1" not in html
    assert f'href="/events/?camera={front_door.public_id}"' in html


def test_charlie_cannot_see_alices_camera_page_or_its_chart(charlie_client, front_door):
    assert charlie_client.get(f"/cameras/{front_door.public_id}/").status_code == 404


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 1, 12, 30, tzinfo=UTC),  # New York falls back at 06:00 UTC that day
        datetime(2027, 3, 14, 12, 30, tzinfo=UTC),  # and springs forward at 07:00 UTC
        datetime(2026, 12, 6, 12, 30, tzinfo=UTC),  # an ordinary day
    ],
)
def test_the_chart_spans_24_real_hours_on_the_days_clocks_change(now):
    since = chart_since(now, zoneinfo.ZoneInfo("America/New_York"))
    assert now - since == timedelta(hours=23, minutes=30)


def test_the_events_page_leaves_motion_out_and_says_so(alice_client, front_door):
    event_make(front_door, label="person", at=T, track_id=3)
    for seconds in range(3):
        event_make(front_door, label="motion", at=T + timedelta(seconds=seconds))
    html = alice_client.get("/events/").content.decode()
    assert "1 event," in html
    assert "person #3" in html
    assert "3 motion events not listed" in html
    assert 'href="?motion=1"' in html
    assert "4 events," in alice_client.get("/events/?motion=1").content.decode()
    # Asking for motion by its class lists it too, and says nothing is hidden.
    html = alice_client.get("/events/?class=motion").content.decode()
    assert "3 events" in html and "not listed" not in html


def test_a_page_of_only_motion_says_where_the_events_are(alice_client, front_door):
    event_make(front_door, label="motion", at=T)
    html = alice_client.get("/events/").content.decode()
    assert "Only motion has been seen so far: 1 motion event." in html
    assert "No events yet" not in html
    assert 'href="?motion=1"' in html


def test_the_detail_page_draws_the_objects_path_over_its_snapshot(
    alice_client, front_door, media_root
):
    path = [[0, 0.1, 0.5, 0.1, 0.3], [800, 0.3, 0.5, 0.1, 0.3], [1600, 0.6, 0.4, 0.1, 0.3]]
    event = event_make(front_door, label="person", at=T, track_id=12, path=path)
    jpeg = snapshot_jpeg(np.zeros((48, 64, 3), np.uint8), label="person #12", boxes=[])
    event.snapshot.save("s.jpg", ContentFile(jpeg), save=True)
    html = alice_client.get(f"/events/{event.pk}").content.decode()
    assert "person #12 on" in html
    assert 'data-points="3"' in html
    # The bottom centre of each box: where the person stood.
    assert 'points="0.15,0.8 0.35,0.8 0.65,0.7"' in html
    # A motion event has no path to draw.
    motion = event_make(front_door, label="motion", at=T)
    motion.snapshot.save("m.jpg", ContentFile(jpeg), save=True)
    assert "event-path" not in alice_client.get(f"/events/{motion.pk}").content.decode()


def test_the_admin_shows_the_zones_an_events_object_entered(admin_client, front_door):
    event = event_make(front_door, label="person", at=T, track_id=7)
    EventZone.objects.create(event=event, zone="Driveway", entered_at=T + timedelta(seconds=2))
    html = admin_client.get(f"/admin/events/detectionevent/{event.pk}/change/").content.decode()
    assert "Driveway" in html
    # The recorder's rows: no form to add or change one.
    assert 'name="zones-0-zone"' not in html and 'name="zones-0-DELETE"' not in html
    listing = admin_client.get("/admin/events/detectionevent/").content.decode()
    assert '<td class="field-track_id">7</td>' in listing
