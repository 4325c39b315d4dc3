from __future__ import annotations

import pytest

from cameras.models import Camera
from organizations.services import membership_add

pytestmark = pytest.mark.django_db


def test_create_works_without_organization_when_user_has_one(alice_api, organization):
    response = alice_api.post(
        "/api/v1/cameras",
        {"name": "Lobby", "source": "demo:", "target_fps": 30, "detectors": ["motion"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    camera = Camera.objects.get(public_id=body["id"])
    assert camera.organization == organization
    assert body["organization"] == organization.id
    assert body["target_fps"] == 30
    assert body["detectors"] == ["motion"]
    assert body["status"] == "connecting"
    assert body["stream_path"] == f"/ws/stream/{camera.public_id}"
    assert body["id"].isalnum() and body["id"].islower()


def test_create_needs_organization_when_user_has_several(alice_api, alice, organization):
    from organizations.services import organization_create

    organization_create(name="Second", owner=alice)
    response = alice_api.post("/api/v1/cameras", {"name": "X", "source": "demo:"}, format="json")
    assert response.status_code == 400
    assert "organization" in response.json()["fields"]

    response = alice_api.post(
        "/api/v1/cameras",
        {"name": "X", "source": "demo:", "organization": organization.id},
        format="json",
    )
    assert response.status_code == 201


def test_create_refuses_someone_elses_organization(alice_api, charlie_organization):
    response = alice_api.post(
        "/api/v1/cameras",
        {"name": "X", "source": "demo:", "organization": charlie_organization.id},
        format="json",
    )
    assert response.status_code == 400
    assert not Camera.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"source": "gopher://x"}, "source", "unsupported source"),
        ({"source": "/no/such/file.mp4"}, "source", "not allowed by policy"),
        ({"detectors": ["motion", "unicorn"]}, "detectors", "unicorn"),
        ({"target_fps": 0}, "target_fps", "greater than or equal to 1"),
        ({"target_fps": 31}, "target_fps", "less than or equal to 30"),
        ({"min_confidence": 1.5}, "min_confidence", "less than or equal to 1"),
        ({"jpeg_quality": 5}, "jpeg_quality", "greater than or equal to 10"),
        ({"detectors": "motion"}, "detectors", "list"),
    ],
)
def test_create_explains_invalid_configuration(alice_api, organization, body, field, words):
    response = alice_api.post(
        "/api/v1/cameras", {"name": "Bad", "source": "demo:", **body}, format="json"
    )
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert words in error["error"]
    assert not Camera.objects.exists()


def test_create_rejects_malformed_json(alice_api, organization):
    response = alice_api.post("/api/v1/cameras", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed"


def test_api_requires_authentication(client, demo_camera):
    assert client.get("/api/v1/cameras").status_code == 401
    assert client.get(f"/api/v1/cameras/{demo_camera.public_id}").status_code == 401


def test_list_shows_own_cameras_with_status_in_few_queries(
    alice_api, demo_camera, push_camera, charlie_camera, django_assert_max_num_queries
):
    Camera.objects.filter(pk=demo_camera.pk).update(status="online", measured_fps=29.5)
    # Token lookup (+touch), then the count, the page of cameras and the reader's roles,
    # whatever the number of cameras.
    with django_assert_max_num_queries(5):
        results = alice_api.get("/api/v1/cameras").json()["results"]
    assert [camera["id"] for camera in results] == [demo_camera.public_id, push_camera.public_id]
    assert results[0]["status"] == "online"
    assert results[0]["measured_fps"] == 29.5


def test_member_can_read_but_not_update_a_camera(bob_api, demo_camera):
    url = f"/api/v1/cameras/{demo_camera.public_id}"
    assert bob_api.get(url).json()["name"] == "Lobby"
    response = bob_api.patch(url, {"target_fps": 15, "detectors": []}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "error": "Only admins and owners may add, change and delete cameras; your role in "
        "Alice Co is member.",
        "code": "forbidden",
    }
    demo_camera.refresh_from_db()
    assert demo_camera.target_fps != 15 and demo_camera.detectors == ["motion"]


def test_admin_can_update_a_camera(bob, bob_api, organization, demo_camera):
    membership_add(organization=organization, user=bob, role="admin")
    url = f"/api/v1/cameras/{demo_camera.public_id}"
    response = bob_api.patch(url, {"target_fps": 15, "detectors": []}, format="json")
    assert response.status_code == 200, response.json()
    demo_camera.refresh_from_db()
    assert demo_camera.target_fps == 15
    assert demo_camera.detectors == []


def test_update_with_invalid_values_changes_nothing(alice_api, demo_camera):
    url = f"/api/v1/cameras/{demo_camera.public_id}"
    response = alice_api.patch(url, {"target_fps": 99, "name": "Renamed"}, format="json")
    assert response.status_code == 400
    demo_camera.refresh_from_db()
    assert (demo_camera.target_fps, demo_camera.name) == (10, "Lobby")


def test_delete_works(alice_api, demo_camera):
    response = alice_api.delete(f"/api/v1/cameras/{demo_camera.public_id}")
    assert response.status_code == 204
    assert not Camera.objects.exists()


def test_charlie_cannot_see_change_or_delete_alices_camera(charlie_api, demo_camera):
    url = f"/api/v1/cameras/{demo_camera.public_id}"
    assert charlie_api.get(url).status_code == 404
    assert charlie_api.patch(url, {"name": "Mine"}, format="json").status_code == 404
    assert charlie_api.delete(url).status_code == 404
    assert charlie_api.get("/api/v1/cameras").json()["results"] == []
    demo_camera.refresh_from_db()
    assert demo_camera.name == "Lobby"


def test_unknown_camera_is_404_json(alice_api, organization):
    response = alice_api.get("/api/v1/cameras/nosuchcamera")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}


def test_update_leaves_the_workers_status_alone(demo_camera):
    from cameras.services import camera_update

    # A worker writes its status after the caller read the camera: the update must not undo it.
    Camera.objects.filter(pk=demo_camera.pk).update(status="online", measured_fps=12.5)
    camera_update(camera=demo_camera, name="Hall")
    demo_camera.refresh_from_db()
    assert (demo_camera.name, demo_camera.status, demo_camera.measured_fps) == (
        "Hall",
        "online",
        12.5,
    )
