"""The classes an organization's events have: read on every prompt and on the events page, so
they are found with one index seek a class, not by reading every event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import DetectionEvent
from events.selectors import event_labels
from tests.events.conftest import event_make

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_an_organization_without_events_has_no_classes(organization):
    assert event_labels(organization_ids=[organization.pk]) == []


def test_classes_are_each_organizations_own_sorted_once(
    organization, charlie_organization, front_door, back_yard, charlie_camera
):
    for n, label in enumerate(["person", "car", "person", "Zebra crossing", "car", "bus"]):
        event_make(front_door if n % 2 else back_yard, label=label, at=AT + timedelta(minutes=n))
    event_make(charlie_camera, label="dog", at=AT)

    assert event_labels(organization_ids=[organization.pk]) == [
        "Zebra crossing",
        "bus",
        "car",
        "person",
    ]
    assert event_labels(organization_ids=[charlie_organization.pk]) == ["dog"]
    assert event_labels(organization_ids=[organization.pk, charlie_organization.pk]) == [
        "Zebra crossing",
        "bus",
        "car",
        "dog",
        "person",
    ]
    assert event_labels(organization_ids=[]) == []


def test_many_events_of_few_classes_are_read_a_class_at_a_time(organization, front_door):
    DetectionEvent.objects.bulk_create(
        DetectionEvent(
            organization=organization,
            camera=front_door,
            label=("person", "car", "motion")[n % 3],
            started_at=AT,
            last_seen_at=AT,
            peak_confidence=0.5,
        )
        for n in range(3000)
    )
    with CaptureQueriesContext(connection) as queries:
        assert event_labels(organization_ids=[organization.pk]) == ["car", "motion", "person"]
    assert len(queries) == 1
    # The query plan seeks the (organization, label) index rather than scanning the events
    # (the captured SQL has its parameters, integers, filled in).
    sql = queries[0]["sql"]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "USING COVERING INDEX" in plan or "USING INDEX" in plan, plan
            assert "SCAN events_detectionevent" not in plan, plan
        else:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0]
            assert _rows_read(plan[0]["Plan"]) < 100, plan


def _rows_read(node: dict) -> int:
    own = (
        node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        if "Scan" in node["Node Type"]
        else 0
    )
    return own + sum(_rows_read(child) for child in node.get("Plans", []))
