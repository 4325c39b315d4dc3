"""The zones editor in Chromium, on a live demo camera under daphne: an admin draws a zone and a
motion mask on the picture and saves them; the server's refusals are shown in words; the mask
reaches the capture worker (motion under it stops); a member sees the shapes and cannot draw."""

from __future__ import annotations

import pytest

from cameras.models import Camera
from cameras.services import camera_create
from tests.conftest import login

pytestmark = pytest.mark.browser


@pytest.fixture
def yard(alice, organization) -> Camera:
    return camera_create(
        organization=organization,
        name="Yard",
        source="demo:",
        target_fps=10,
        max_width=640,
        detectors=["motion"],
    )


def click_at(page, fractions: list[tuple[float, float]]) -> None:
    """Clicks on the picture at these fractions of its width and height."""
    box = page.locator("#zone-layer").bounding_box()
    for x, y in fractions:
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])


def boxes_drawn(page) -> int:
    return int(page.eval_on_selector("#player", "el => el.dataset.boxes || '0'"))


def test_an_admin_draws_and_saves_a_zone_and_a_mask_that_the_worker_then_applies(
    orm_beside_playwright, live_daphne, yard, page
):
    server = live_daphne(
        CAMERAS_IN_PROCESS="1", CAMERA_RELOAD_SECONDS="1", DJANGO_ALLOW_ASYNC_UNSAFE=""
    )
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/{yard.public_id}/")
    assert page.is_visible("#zones-empty")
    page.wait_for_function("Number(document.getElementById('player').dataset.boxes) > 0")

    # A zone needs a name: without one, the editor says so and keeps the corners.
    page.click("#draw-zone")
    click_at(page, [(0.5, 0.6), (0.9, 0.6), (0.9, 0.95)])
    assert page.is_disabled("#save-zones")
    page.click("#finish-drawing")
    assert "Name the zone first" in page.text_content("#zones-error")
    page.fill("#zone-name", "Driveway")
    click_at(page, [(0.5, 0.95)])
    click_at(page, [(0.5, 0.6)])  # the first corner again closes the shape
    assert page.text_content("#zone-list") == "Zone: Driveway (4 corners)Delete"
    assert page.text_content(".zone-label") == "Driveway"

    # A mask over the whole picture; Esc first cancels a shape begun by mistake.
    page.click("#draw-mask")
    click_at(page, [(0.2, 0.2), (0.3, 0.2)])
    page.keyboard.press("Escape")
    assert page.is_visible("#draw-mask")
    page.click("#draw-mask")
    click_at(page, [(0.005, 0.005), (0.995, 0.005), (0.995, 0.995), (0.005, 0.995)])
    page.keyboard.press("Enter")
    page.click("#save-zones")
    page.wait_for_function("document.getElementById('zone-hint').textContent.startsWith('Saved')")

    yard.refresh_from_db()
    [driveway] = yard.zones
    assert driveway["name"] == "Driveway"
    expected = [(0.5, 0.6), (0.9, 0.6), (0.9, 0.95), (0.5, 0.95)]
    for (x, y), (want_x, want_y) in zip(driveway["points"], expected, strict=True):
        assert abs(x - want_x) < 0.01 and abs(y - want_y) < 0.01
    # Its corners, clicked a few pixels inside the picture, are on its edges.
    assert yard.motion_masks == [{"name": "Mask 1", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}]

    # The capture worker picks the mask up (it re-reads cameras every second here): the demo
    # scene moves on, and no motion box is drawn any more.
    page.wait_for_function(
        "document.getElementById('player').dataset.boxes === '0'", timeout=20_000
    )
    frames = int(page.eval_on_selector("#player", "el => el.dataset.frames"))
    for _ in range(10):
        page.wait_for_timeout(150)
        assert boxes_drawn(page) == 0
    assert int(page.eval_on_selector("#player", "el => el.dataset.frames")) > frames

    # Reloaded, the page shows what was saved.
    page.reload()
    labels = page.locator(".zone-label").all_text_contents()
    assert labels == ["Driveway", "Mask 1 (mask)"]


def test_the_servers_refusal_is_shown_in_words_and_nothing_is_saved(
    orm_beside_playwright, live_daphne, yard, page
):
    server = live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/{yard.public_id}/")
    page.fill("#zone-name", "Fence")
    page.click("#draw-zone")
    click_at(page, [(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)])  # on one line: no area
    page.keyboard.press("Enter")
    page.click("#save-zones")
    page.wait_for_selector("#zones-error:not([hidden])")
    assert "encloses no area" in page.text_content("#zones-error")
    assert page.text_content("#zone-list").startswith("Zone: Fence")  # the draft is kept
    yard.refresh_from_db()
    assert yard.zones == []

    # Two zones of one name are refused before anything is sent.
    page.click("#zone-list button")  # delete the flat one
    for corners in ([(0.1, 0.1), (0.3, 0.1), (0.3, 0.3)], [(0.6, 0.6), (0.8, 0.6), (0.8, 0.8)]):
        page.fill("#zone-name", "Fence")
        page.click("#draw-zone")
        click_at(page, corners)
        page.keyboard.press("Enter")
    assert "already a zone named “Fence”" in page.text_content("#zones-error")


def test_a_member_sees_the_zones_but_has_no_tools(
    orm_beside_playwright, live_daphne, yard, bob, page
):
    yard.zones = [{"name": "Gate", "points": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]}]
    yard.save()
    server = live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "bob", "bob-password")
    page.goto(f"{server.url}/cameras/{yard.public_id}/")
    assert page.locator(".zone-label").all_text_contents() == ["Gate"]
    assert page.locator("#zone-tools").count() == 0
    assert page.locator("#zone-list button").count() == 0
    page.uncheck("#show-zones")
    assert page.is_hidden(".zone-label")
