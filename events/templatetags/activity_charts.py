"""`{% activity_chart camera=camera %}` / `{% activity_chart organization=organization %}`.

Draws the last 24 hours of events per class as inline SVG. The caller has already decided the
user may see this camera or organization (the camera page and the dashboard do); the tag only
narrows to it.
"""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils import timezone

from events.charts import chart_build
from events.selectors import EventFilter, event_activity, events_for_organization

register = template.Library()

HOURS = 24


@register.inclusion_tag("events/_activity_chart.html")
def activity_chart(*, camera=None, organization=None) -> dict:
    if (camera is None) == (organization is None):
        raise template.TemplateSyntaxError(
            "activity_chart needs exactly one of camera, organization"
        )
    tz = timezone.get_current_timezone()
    now = timezone.now()
    # Whole clock hours: 23 finished ones and the current one.
    since = now.astimezone(tz).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=HOURS - 1
    )
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
