"""Pages: the events review list (filters, thumbnails, pagination) and an event's detail.

Besides its visible filters the list takes the API's `since`, `until` (ISO 8601 times),
`session` and `organization` (an id): the assistant's answers link here with them, so the page
lists exactly the events an answer counted."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from cameras.selectors import cameras_for_user
from events.selectors import (
    EventFilter,
    event_count,
    event_get_for_user,
    event_labels,
    event_list,
    events_for_user,
)
from organizations.selectors import organizations_for_user
from project.period_form import PeriodFilterForm
from project.query_params import ID_MAX

PAGE_SIZE = 24
LABEL_MAX = 64  # DetectionEvent.label's length
MOTION = "motion"
ZONE_MAX = 40  # EventZone.zone's length


class EventFilterForm(PeriodFilterForm):
    """The review page's filters; dates are whole days in the server's time zone."""

    camera = forms.ChoiceField(required=False)
    label = forms.ChoiceField(required=False, label="Class")
    zone = forms.ChoiceField(required=False, label="Zone")
    # Motion events are many and say little once objects are tracked: listed on request (or
    # when motion is the class asked for).
    motion = forms.BooleanField(required=False, label="Show motion")
    session = forms.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, widget=forms.HiddenInput, label="Session"
    )
    organization = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=ID_MAX,
        widget=forms.HiddenInput,
        label="Organization",
    )

    def __init__(self, *args, cameras, labels, **kwargs):
        super().__init__(*args, **kwargs)
        zones = sorted({zone["name"] for camera in cameras for zone in camera.zones or []})
        requested = (self.data.get("zone") or "") if self.is_bound else ""
        if requested and requested not in zones and len(requested) <= ZONE_MAX:
            # A zone since renamed or removed (an old link): a filter with no rows, not an
            # error that would list every event instead.
            zones.append(requested)
        self.fields["zone"].choices = [("", "Any zone")] + [(zone, zone) for zone in zones]
        self.fields["camera"].choices = [("", "All cameras")] + [
            (camera.public_id, camera.name) for camera in cameras
        ]
        self.fields["label"].choices = [("", "All classes")] + [(label, label) for label in labels]

    def to_filter(self) -> EventFilter:
        if not self.is_valid():
            return EventFilter(excluded_labels=(MOTION,))
        data = self.cleaned_data
        tz = timezone.get_current_timezone()

        def midnight(day) -> datetime:
            return datetime.combine(day, time(0), tzinfo=tz)

        # Both kinds of bounds may be given: the window is where they overlap.
        starts = [data.get("since")]
        ends = [data.get("until")]
        if data.get("date_from"):
            starts.append(midnight(data["date_from"]))
        if data.get("date_to"):
            ends.append(midnight(data["date_to"] + timedelta(days=1)))
        starts = [moment for moment in starts if moment is not None]
        ends = [moment for moment in ends if moment is not None]
        return EventFilter(
            camera_public_ids=(data["camera"],) if data.get("camera") else (),
            labels=(data["label"],) if data.get("label") else (),
            excluded_labels=((MOTION,) if not data.get("label") and not data.get("motion") else ()),
            since=max(starts) if starts else None,
            until=min(ends) if ends else None,
            session_id=data.get("session"),
            zone=data.get("zone") or None,
        )

    def organization_id(self) -> int | None:
        return self.cleaned_data.get("organization") if self.is_valid() else None


@login_required
def event_list_page(request: HttpRequest) -> HttpResponse:
    events = events_for_user(user=request.user)
    cameras = list(cameras_for_user(user=request.user).order_by("name", "id"))
    # `class` is what the API and the links call it; the form field cannot be named that.
    query = request.GET.copy()
    if "class" in query and "label" not in query:
        query["label"] = query["class"]
    labels = event_labels(
        organization_ids=organizations_for_user(user=request.user).values_list("pk", flat=True)
    )
    requested_label = query.get("label", "")
    if requested_label and requested_label not in labels and len(requested_label) <= LABEL_MAX:
        # A class nothing has been seen as yet (an answer's "0 face events" links here): a
        # valid filter with no rows, not an error that would show every event instead.
        labels.append(requested_label)
    form = EventFilterForm(query or None, cameras=cameras, labels=labels)
    filters = form.to_filter()
    if organization_id := form.organization_id():
        # Narrows within the user's own events: another organization's id shows nothing.
        events = events.filter(camera__organization_id=organization_id)
    page = Paginator(event_list(events=events, filters=filters), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    # Said beside the list, with a link to show them: hidden is not the same as none.
    hidden_motion = (
        event_count(events=events, filters=replace(filters, excluded_labels=(), labels=(MOTION,)))
        if filters.excluded_labels
        else 0
    )
    # Filters travel with the pagination links.
    kept = query.copy()
    kept.pop("page", None)
    kept.pop("class", None)
    return render(
        request,
        "events/list.html",
        {
            "form": form,
            "page": page,
            "filtered": any(
                (
                    filters.camera_public_ids,
                    filters.labels,
                    filters.since,
                    filters.until,
                    filters.session_id,
                    filters.zone,
                    form.organization_id(),
                )
            ),
            "filters": filters,
            "has_cameras": bool(cameras),
            "has_zones": len(form.fields["zone"].choices) > 1,
            "query": kept.urlencode(),
            "hidden_motion": hidden_motion,
            "motion_query": _with(kept, motion="1"),
        },
    )


def _with(query, **values: str) -> str:
    changed = query.copy()
    for name, value in values.items():
        changed[name] = value
    return changed.urlencode()


@login_required
def event_detail_page(request: HttpRequest, event_id: int) -> HttpResponse:
    event = event_get_for_user(user=request.user, event_id=event_id)
    if event is None:
        raise Http404("No such event.")
    return render(request, "events/detail.html", {"event": event})
