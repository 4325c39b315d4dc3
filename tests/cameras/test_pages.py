from __future__ import annotations

import json

import pytest

from cameras.publishing import PublishedFrame, frame_remember, latest_frame_get
from cameras.services import camera_create, demo_setup
from tests.cameras.conftest import jpeg_bytes, now_ms

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, alice, organization):
    client.login(username="alice", password="alice-password")
    return client


def test_grid_lists_own_cameras_with_status_in_few_queries(
    alice_client, demo_camera, push_camera, charlie_camera, django_assert_max_num_queries
):
    with django_assert_max_num_queries(6):
        response = alice_client.get("/cameras/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Lobby" in html and "Webcam" in html
    assert "Charlie" not in html
    assert 'class="badge connecting"' in html


def test_grid_explains_how_to_add_a_camera_when_empty(alice_client):
    html = alice_client.get("/cameras/").content.decode()
    assert "No cameras yet" in html
    assert "/api/v1/cameras" in html


def test_player_page_hands_the_stream_settings_to_js(alice_client, demo_camera, organization):
    response = alice_client.get(f"/cameras/{demo_camera.public_id}/")
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('id="stream-settings"')
    data = json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])
    assert data == {
        "camera_id": demo_camera.public_id,
        "scheme": "ws",
        "host": "",
        "path": f"/ws/stream/{demo_camera.public_id}",
        "ingest_url": "/api/v1/actions/actions/send",
        "retry_seconds": 30.0,
    }
    assert "js/player.js" in html


def test_player_uses_the_organizations_websocket_host(alice_client, demo_camera, organization):
    organization.server_host_url = "https://cams.example.org"
    organization.ws_port = 7103
    organization.save()
    html = alice_client.get(f"/cameras/{demo_camera.public_id}/").content.decode()
    assert '"host": "cams.example.org:7103"' in html
    assert '"scheme": "wss"' in html

    organization.server_host_url = "cams.example.org:8443"
    organization.save()
    html = alice_client.get(f"/cameras/{demo_camera.public_id}/").content.decode()
    assert '"host": "cams.example.org:8443"' in html
    assert '"scheme": "ws"' in html

    # The validator accepts a scheme in any case; an https page must still get wss, not ws.
    organization.server_host_url = "WSS://cams.example.org"
    organization.full_clean()
    organization.save()
    html = alice_client.get(f"/cameras/{demo_camera.public_id}/").content.decode()
    assert '"scheme": "wss"' in html


def test_publish_page_explains_when_the_camera_is_not_push(alice_client, demo_camera):
    html = alice_client.get(f"/cameras/{demo_camera.public_id}/publish").content.decode()
    assert "only cameras whose source is" in html.lower()
    assert "publish.js" not in html


def test_publish_page_for_a_push_camera(alice_client, push_camera):
    html = alice_client.get(f"/cameras/{push_camera.public_id}/publish").content.decode()
    assert "js/publish.js" in html
    assert "Start webcam" in html


def test_snapshot_is_the_latest_jpeg_or_204(alice_client, demo_camera):
    url = f"/cameras/{demo_camera.public_id}/snapshot.jpg"
    assert alice_client.get(url).status_code == 204
    frame = PublishedFrame.build(
        camera_id=demo_camera.public_id, jpeg=jpeg_bytes(), timestamp=now_ms(), detections=None
    )
    frame_remember(frame)
    response = alice_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response.content == latest_frame_get(demo_camera.public_id).jpeg


def test_charlie_gets_404_for_every_page_of_alices_camera(client, charlie, demo_camera):
    client.login(username="charlie", password="charlie-password")
    for suffix in ("/", "/publish", "/snapshot.jpg"):
        assert client.get(f"/cameras/{demo_camera.public_id}{suffix}").status_code == 404


def test_pages_need_login(client, demo_camera):
    response = client.get("/cameras/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_demo_setup_gives_the_demo_organization_a_demo_and_a_push_camera_detecting_people():
    organization, _ = demo_setup(password="demo-password-123")
    cameras = {camera.source: camera for camera in organization.cameras.all()}
    assert set(cameras) == {"demo:", "push:"}
    # What a user expects to see working: motion, and people as people.
    assert cameras["demo:"].detectors == ["motion", "person"]
    assert cameras["push:"].detectors == ["motion", "person"]
    assert cameras["demo:"].enabled


def test_a_new_camera_detects_motion_and_people_unless_told_otherwise(organization):
    porch = camera_create(organization=organization, name="Porch", source="push:")
    shed = camera_create(organization=organization, name="Shed", source="push:", detectors=[])
    assert porch.detectors == ["motion", "person"]
    assert shed.detectors == []
