"""Pages: the events review list (filters, thumbnails, pagination) and an event's detail."""

from __future__ import annotations

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
    event_get_for_user,
    event_labels,
    event_list,
    events_for_user,
)
from project.query_params import ParamError, date_in_bounds

PAGE_SIZE = 24


class EventFilterForm(forms.Form):
    """The review page's filters; dates are whole days in the server's time zone."""

    camera = forms.ChoiceField(required=False)
    label = forms.ChoiceField(required=False, label="Class")
    date_from = forms.DateField(required=False, label="From")
    date_to = forms.DateField(required=False, label="To")

    def __init__(self, *args, cameras, labels, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["camera"].choices = [("", "All cameras")] + [
            (camera.public_id, camera.name) for camera in cameras
        ]
        self.fields["label"].choices = [("", "All classes")] + [(label, label) for label in labels]
        self.fields["date_from"].widget = forms.DateInput(attrs={"type": "date"})
        self.fields["date_to"].widget = forms.DateInput(attrs={"type": "date"})

    def clean(self):
        data = super().clean()
        for name in ("date_from", "date_to"):
            if data.get(name):
                try:
                    date_in_bounds(data[name], name=self.fields[name].label)
                except ParamError as exc:
                    # Year 1 or 9999 would overflow when turned into a window; add_error
                    # also takes the date out of cleaned_data.
                    self.add_error(name, exc.message)
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def to_filter(self) -> EventFilter:
        if not self.is_valid():
            return EventFilter()
        data = self.cleaned_data
        tz = timezone.get_current_timezone()

        def midnight(day) -> datetime:
            return datetime.combine(day, time(0), tzinfo=tz)

        return EventFilter(
            camera_public_ids=(data["camera"],) if data.get("camera") else (),
            labels=(data["label"],) if data.get("label") else (),
            since=midnight(data["date_from"]) if data.get("date_from") else None,
            until=midnight(data["date_to"] + timedelta(days=1)) if data.get("date_to") else None,
        )


@login_required
def event_list_page(request: HttpRequest) -> HttpResponse:
    events = events_for_user(user=request.user)
    cameras = list(cameras_for_user(user=request.user).order_by("name", "id"))
    # `class` is what the API and the links call it; the form field cannot be named that.
    query = request.GET.copy()
    if "class" in query and "label" not in query:
        query["label"] = query["class"]
    form = EventFilterForm(query or None, cameras=cameras, labels=event_labels(events=events))
    filters = form.to_filter()
    page = Paginator(event_list(events=events, filters=filters), PAGE_SIZE).get_page(
        request.GET.get("page")
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
                (filters.camera_public_ids, filters.labels, filters.since, filters.until)
            ),
            "has_cameras": bool(cameras),
            "query": kept.urlencode(),
        },
    )


@login_required
def event_detail_page(request: HttpRequest, event_id: int) -> HttpResponse:
    event = event_get_for_user(user=request.user, event_id=event_id)
    if event is None:
        raise Http404("No such event.")
    return render(request, "events/detail.html", {"event": event})
