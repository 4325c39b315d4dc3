"""Alerts raised by the recorder's flush: which events meet which rules, once per event, with
the cool-down and quiet hours, in the same transaction as the events."""

from __future__ import annotations

import base64
import logging
from datetime import time, timedelta

import cv2
import numpy as np
import pytest
from django.utils import timezone

from events.models import DetectionEvent
from notifications.models import Alert, AlertRule, Webhook, WebhookDelivery
from notifications.services import alerts_raised

pytestmark = pytest.mark.django_db

T0 = 1_763_900_000_000  # Unix ms


def person(track_id: int, confidence: float = 0.8, x: int = 10) -> dict:
    return {
        "class": "person",
        "confidence": confidence,
        "bbox": [x, 20, 30, 60],
        "track_id": track_id,
    }


def frame() -> np.ndarray:
    image = np.zeros((120, 160, 3), np.uint8)
    image[40:80, 40:80] = (40, 90, 200)
    return image


def see(recorder, camera, at_ms: int, *detections) -> None:
    recorder.record_frame(
        camera=camera, timestamp_ms=at_ms, detections=list(detections), frame=frame()
    )


def rule_make(organization, **fields) -> AlertRule:
    cameras = fields.pop("cameras", [])
    rule = AlertRule.objects.create(
        organization=organization, name=fields.pop("name", "People"), **fields
    )
    rule.cameras.set(cameras)
    return rule


def test_a_person_raises_one_alert_at_the_first_flush_and_none_at_the_next(
    recorder, organization, front_door
):
    rule = rule_make(organization, classes=["person"])
    see(recorder, front_door, T0, person(1))
    recorder.flush()
    alert = Alert.objects.get()
    assert (alert.rule, alert.label, alert.camera) == (rule, "person", front_door)
    assert alert.event == DetectionEvent.objects.get(label="person")

    see(recorder, front_door, T0 + 500, person(1))
    recorder.flush()
    see(recorder, front_door, T0 + 5_000)  # the person is gone: the event closes
    recorder.flush()
    assert Alert.objects.count() == 1


def test_filters_camera_class_zone_and_confidence(recorder, organization, front_door, back_yard):
    rule_make(organization, name="Yard only", cameras=[back_yard])
    rule_make(organization, name="Cars", classes=["car"])
    rule_make(organization, name="Porch", zones=["Porch"])
    rule_make(organization, name="Sure", min_confidence=0.9)
    matching = rule_make(
        organization,
        name="Door people",
        cameras=[front_door],
        classes=["person"],
        min_confidence=0.5,
    )
    see(recorder, front_door, T0, person(1, confidence=0.7))
    recorder.flush()
    assert [alert.rule for alert in Alert.objects.all()] == [matching]


def test_a_minimum_duration_waits_for_the_flush_at_which_the_object_has_stayed_long_enough(
    recorder, organization, front_door
):
    rule_make(organization, min_duration_seconds=2)
    see(recorder, front_door, T0, person(1))
    recorder.flush()
    for at in (500, 1_000, 1_500):
        see(recorder, front_door, T0 + at, person(1))
        recorder.flush()
    assert not Alert.objects.exists()
    see(recorder, front_door, T0 + 2_000, person(1))
    recorder.flush()
    assert Alert.objects.count() == 1


def test_the_cooldown_holds_back_a_second_person_on_the_same_camera(
    recorder, organization, front_door, back_yard
):
    rule_make(organization, cooldown_seconds=60)
    rule_make(organization, name="Every one", cooldown_seconds=0)
    see(recorder, front_door, T0, person(1), person(2, x=90))
    see(recorder, back_yard, T0, person(1))
    recorder.flush()
    by_rule = {}
    for alert in Alert.objects.select_related("rule"):
        by_rule.setdefault(alert.rule.name, []).append(alert.camera_id)
    # One per camera and class for the cooled rule, one per event for the other.
    assert sorted(by_rule["People"]) == sorted([front_door.pk, back_yard.pk])
    assert sorted(by_rule["Every one"]) == sorted([front_door.pk, front_door.pk, back_yard.pk])

    # A new person on the front door after the first alert: still within the cool-down.
    see(recorder, front_door, T0 + 10_000, person(3))
    recorder.flush()
    assert Alert.objects.filter(rule__name="People").count() == 2
    # Once the cool-down has passed, the next new person raises one.
    Alert.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    see(recorder, front_door, T0 + 10_500, person(3))
    recorder.flush()
    assert Alert.objects.filter(rule__name="People", camera=front_door).count() == 2


def test_quiet_hours_in_the_organizations_time_zone_hold_alerts_back(
    recorder, organization, front_door
):
    organization.time_zone = "Asia/Tokyo"
    organization.save()
    now_in_tokyo = timezone.now().astimezone(organization.tzinfo)
    start = (now_in_tokyo - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now_in_tokyo + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    rule_make(organization, name="Quiet now", quiet_hours_start=start, quiet_hours_end=end)
    # Quiet hours two hours later in Tokyo, which would cover now in UTC on some days: not now.
    later = (now_in_tokyo + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    after = (now_in_tokyo + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    loud = rule_make(organization, name="Loud now", quiet_hours_start=later, quiet_hours_end=after)
    see(recorder, front_door, T0, person(1))
    recorder.flush()
    assert [alert.rule for alert in Alert.objects.all()] == [loud]


@pytest.mark.parametrize(
    ("start", "end", "moment", "quiet"),
    [
        (time(22), time(6), time(23, 30), True),
        (time(22), time(6), time(5, 59), True),
        (time(22), time(6), time(6), False),
        (time(22), time(6), time(12), False),
        (time(9), time(17), time(9), True),
        (time(9), time(17), time(17), False),
        (time(9), time(9), time(9), False),  # an empty span is no quiet hours
    ],
)
def test_quiet_hours_spans(start, end, moment, quiet, organization):
    rule = AlertRule(organization=organization, quiet_hours_start=start, quiet_hours_end=end)
    tz = organization.tzinfo
    instant = (
        timezone.now()
        .astimezone(tz)
        .replace(hour=moment.hour, minute=moment.minute, second=0, microsecond=0)
    )
    assert rule.is_quiet_at(instant, tz) is quiet


def test_a_webhooks_alert_gets_an_outbox_row_with_the_event_and_its_snapshot(
    recorder, organization, front_door, settings
):
    settings.PUBLIC_URL = "https://nvr.example.com"
    webhook = Webhook.objects.create(
        organization=organization,
        name="Door bot",
        url="https://hooks.example.com/in",
        classes=["person"],
    )
    see(recorder, front_door, T0, person(7))
    recorder.flush()
    delivery = WebhookDelivery.objects.get()
    event = DetectionEvent.objects.get()
    assert delivery.webhook == webhook and delivery.status == "pending"
    assert delivery.alert.event == event
    body = delivery.payload
    assert body["type"] == "alert" and body["webhook"] == {"id": webhook.pk, "name": "Door bot"}
    assert body["event"]["camera"] == {"id": front_door.public_id, "name": "Front door"}
    assert body["event"]["track_id"] == 7 and body["event"]["label"] == "person"
    assert body["event"]["links"]["page"] == f"https://nvr.example.com/events/{event.pk}"
    assert (
        body["event"]["links"]["snapshot"]
        == f"https://nvr.example.com/api/v1/events/{event.pk}/snapshot"
    )
    jpeg = base64.b64decode(body["snapshot"]["base64"])
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (120, 160, 3)


def test_another_organizations_rules_never_see_these_events(
    recorder, organization, front_door, charlie_organization
):
    rule_make(charlie_organization, name="Charlie's")
    Webhook.objects.create(
        organization=charlie_organization, name="Charlie hook", url="https://example.com/"
    )
    see(recorder, front_door, T0, person(1))
    recorder.flush()
    assert not Alert.objects.exists() and not WebhookDelivery.objects.exists()


def test_a_disabled_rule_raises_nothing(recorder, organization, front_door):
    rule_make(organization, enabled=False)
    see(recorder, front_door, T0, person(1))
    recorder.flush()
    assert not Alert.objects.exists()


def test_listeners_hear_of_alerts_once_committed(
    recorder, organization, front_door, django_capture_on_commit_callbacks
):
    rule_make(organization, notify_mqtt=True)
    heard = []

    def listener(sender, alerts, **kwargs):
        heard.extend(alerts)

    alerts_raised.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            see(recorder, front_door, T0, person(4))
            recorder.flush()
    finally:
        alerts_raised.disconnect(listener)
    (raised,) = heard
    assert raised.notify_browser and raised.notify_mqtt
    assert raised.body["event"]["track_id"] == 4
    assert raised.body["rule"]["name"] == "People"


def test_a_failure_raising_alerts_keeps_the_events_and_is_logged_once(
    recorder, organization, front_door, monkeypatch, caplog
):
    rule_make(organization)

    def broken(**kwargs):
        raise RuntimeError("the alerts table is gone")

    monkeypatch.setattr("notifications.matching.alerts_create", broken)
    caplog.set_level(logging.ERROR, logger="notifications.matching")
    see(recorder, front_door, T0, person(1))
    recorder.flush()
    see(recorder, front_door, T0 + 300, person(1))
    recorder.flush()
    assert DetectionEvent.objects.count() == 1
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info

    monkeypatch.undo()
    see(recorder, front_door, T0 + 600, person(1))
    recorder.flush()
    assert Alert.objects.count() == 1  # raised at the event's next write
