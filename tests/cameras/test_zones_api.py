"""Zones and motion masks through the cameras API: stored as drawn, every malformed polygon
refused with words, nothing half-saved; only admins change them, and only in their organization."""

from __future__ import annotations

import pytest

from cameras.models import Camera
from cameras.services import camera_create
from cameras.zones import MAX_POINTS, MAX_POLYGONS

pytestmark = pytest.mark.django_db

DRIVEWAY = {"name": "Driveway", "points": [[0.5, 0.6], [1, 0.6], [1, 1], [0.5, 1]]}
CLOCK = {"name": "Clock", "points": [[0, 0], [0.3, 0], [0.3, 0.08], [0, 0.08]]}


@pytest.fixture
def street(organization) -> Camera:
    return camera_create(organization=organization, name="Street", source="push:")


def url(camera: Camera) -> str:
    return f"/api/v1/cameras/{camera.public_id}"


def test_an_admin_saves_zones_and_masks_and_reads_them_back(alice_api, street):
    response = alice_api.patch(
        url(street), {"zones": [DRIVEWAY], "motion_masks": [CLOCK]}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["zones"] == [DRIVEWAY]
    assert response.json()["motion_masks"] == [CLOCK]
    street.refresh_from_db()
    assert street.zones == [DRIVEWAY] and street.motion_masks == [CLOCK]
    assert alice_api.get(url(street)).json()["zones"] == [DRIVEWAY]


def test_a_new_camera_may_come_with_its_zones(alice_api, organization):
    response = alice_api.post(
        "/api/v1/cameras",
        {"name": "Gate", "source": "push:", "zones": [DRIVEWAY]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert Camera.objects.get(name="Gate").zones == [DRIVEWAY]


def test_clearing_zones_leaves_none(alice_api, street):
    street.zones = [DRIVEWAY]
    street.save()
    assert alice_api.patch(url(street), {"zones": []}, format="json").status_code == 200
    street.refresh_from_db()
    assert street.zones == []


@pytest.mark.parametrize(
    ("zones", "words"),
    [
        ({"name": "Driveway"}, "Must be a list of polygons."),
        ("Driveway", "Must be a list of polygons."),
        ([["not", "a", "polygon"]], 'must be {"name": …, "points": [[x, y], …]}'),
        ([{"name": "Driveway", "points": DRIVEWAY["points"], "colour": "red"}], "must be {"),
        ([{"name": "", "points": DRIVEWAY["points"]}], "needs a name"),
        ([{"name": "<script>", "points": DRIVEWAY["points"]}], "must be at most 40 letters"),
        ([{"name": "x" * 41, "points": DRIVEWAY["points"]}], "must be at most 40 letters"),
        ([DRIVEWAY, {**DRIVEWAY, "name": "DRIVEWAY"}], "Two polygons are named 'DRIVEWAY'"),
        ([{"name": "Line", "points": [[0, 0], [1, 1]]}], "needs 3 to 32 points"),
        (
            [{"name": "Many", "points": [[0.5, 0.5]] * (MAX_POINTS + 1)}],
            "needs 3 to 32 points",
        ),
        ([{"name": "Out", "points": [[0, 0], [1.5, 0], [1, 1]]}], "fractions of the frame"),
        ([{"name": "Neg", "points": [[0, 0], [-0.1, 0], [1, 1]]}], "fractions of the frame"),
        ([{"name": "Text", "points": [[0, 0], ["1", 0], [1, 1]]}], "fractions of the frame"),
        ([{"name": "Bool", "points": [[0, 0], [True, 0], [1, 1]]}], "fractions of the frame"),
        ([{"name": "Flat", "points": [[0, 0], [0.5, 0.5], [1, 1]]}], "encloses no area"),
        ([{**DRIVEWAY, "name": f"Z{i}"} for i in range(MAX_POLYGONS + 1)], "At most 16 polygons"),
    ],
)
def test_malformed_zones_are_refused_with_words_and_nothing_changes(
    alice_api, street, zones, words
):
    before = Camera.objects.get(pk=street.pk)
    response = alice_api.patch(url(street), {"zones": zones, "name": "Renamed"}, format="json")
    assert response.status_code == 400
    assert words in str(response.json()), response.json()
    street.refresh_from_db()
    assert (street.zones, street.name) == (before.zones, before.name)


def test_every_problem_is_named_at_once(alice_api, street):
    zones = [{"name": "", "points": [[0, 0]]}, {"name": "Ok", "points": [[0, 0], [2, 0], [1, 1]]}]
    body = str(alice_api.patch(url(street), {"motion_masks": zones}, format="json").json())
    assert "Polygon 1 needs a name" in body
    assert "needs 3 to 32 points" in body
    assert "'Ok''s points must be [x, y] pairs" in body


def test_an_oversized_body_is_refused_before_it_is_parsed(alice_api, street, settings):
    settings.API_JSON_MAX_BYTES = 4096
    points = [[0.5, 0.5]] * 2000
    response = alice_api.patch(
        url(street), {"zones": [{"name": "Huge", "points": points}]}, format="json"
    )
    assert response.status_code == 413
    street.refresh_from_db()
    assert street.zones == []


def test_a_member_may_read_zones_but_not_change_them(alice_api, bob_api, street):
    alice_api.patch(url(street), {"zones": [DRIVEWAY]}, format="json")
    assert bob_api.get(url(street)).json()["zones"] == [DRIVEWAY]
    response = bob_api.patch(url(street), {"zones": []}, format="json")
    assert response.status_code == 403
    street.refresh_from_db()
    assert street.zones == [DRIVEWAY]


def test_another_organization_cannot_draw_on_a_camera(charlie_api, street):
    response = charlie_api.patch(url(street), {"motion_masks": [CLOCK]}, format="json")
    assert response.status_code == 404
    street.refresh_from_db()
    assert street.motion_masks == []


def test_without_a_token_nothing_is_changed(client, street):
    response = client.patch(url(street), {"zones": [DRIVEWAY]}, content_type="application/json")
    assert response.status_code in (401, 403)
    street.refresh_from_db()
    assert street.zones == []
