"""`{% activity_chart camera=camera %}` / `{% activity_chart organization=organization %}`.

Draws the last 24 hours of events per class as inline SVG. The caller has already decided the
user may see this camera or organization (the camera page and the dashboard do); the tag only
narrows to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from django import template
from django.utils import timezone

from events.charts import chart_build
from events.selectors import EventFilter, event_activity, events_for_organization

register = template.Library()

HOURS = 24


def chart_since(now: datetime, tz: tzinfo) -> datetime:
    """The chart's start: 23 finished clock hours before the current one. Counted in real hours
    (in UTC), because an aware datetime's arithmetic is wall-clock time: on the day clocks change
    it would give 22 or 24 hours."""
    current_hour = now.astimezone(tz).replace(minute=0, second=0, microsecond=0)
    return current_hour.astimezone(UTC) - timedelta(hours=HOURS - 1)


@register.inclusion_tag("events/_activity_chart.html")
def activity_chart(*, camera=None, organization=None) -> dict:
    if (camera is None) == (organization is None):
        raise template.TemplateSyntaxError(
            "activity_chart needs exactly one of camera, organization"
        )
    tz = timezone.get_current_timezone()
    now = timezone.now()
    since = chart_since(now, tz)
    if camera is not None:
        events = events_for_organization(organization=camera.organization)
        filters = EventFilter(camera_public_ids=(camera.public_id,))
    else:
        events = events_for_organization(organization=organization)
        filters = EventFilter()
    activity = event_activity(
        events=events, since=since, until=now, bucket=timedelta(hours=1), filters=filters
    )
    return {
        "chart": chart_build(activity, tz=tz),
        "camera": camera,
        "events_url": f"/events/?camera={camera.public_id}" if camera is not None else "/events/",
    }
