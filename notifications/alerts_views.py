"""The alerts page: every alert of the user's organizations, newest first, with its snapshot,
camera, class, zones, the rule or webhook that raised it and, for a webhook's, how its
delivery went.

Its filters read like the events page's: `camera`, `date_from`/`date_to` (whole days in the
server's time zone) and the API's `since`/`until` (ISO 8601 times, `until` not included), so
that a link from the assistant lists exactly the alerts it counted; `since` also takes `today`
and `yesterday` (from that midnight on). `organization`, `rule` and `webhook` (ids) narrow it
further."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from cameras.selectors import cameras_for_user
from notifications.alert_listing import AlertListFilter, alerts_filtered
from notifications.selectors import alerts_for_user
from project.period_form import PeriodFilterForm
from project.query_params import ID_MAX

PAGE_SIZE = 24
SINCE_WORDS = {"today": 0, "yesterday": 1}  # days back to the midnight `since` stands for


def _midnight(day) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.get_current_timezone())


class SinceField(forms.DateTimeField):
    """An ISO time, or `today` / `yesterday` (that day's midnight, in the server's time zone)."""

    def to_python(self, value):
        word = (value or "").strip().lower() if isinstance(value, str) else None
        if word in SINCE_WORDS:
            return _midnight(timezone.localdate() - timedelta(days=SINCE_WORDS[word]))
        return super().to_python(value)


def _id_field(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, widget=forms.HiddenInput, label=label
    )


class AlertFilterForm(PeriodFilterForm):
    camera = forms.ChoiceField(required=False)
    since = SinceField(required=False, widget=forms.HiddenInput, label="Since")
    organization = _id_field("Organization")
    rule = _id_field("Rule")
    webhook = _id_field("Webhook")

    def __init__(self, *args, cameras, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["camera"].choices = [("", "All cameras")] + [
            (camera.public_id, camera.name) for camera in cameras
        ]

    def to_filter(self) -> AlertListFilter | None:
        """The filter asked for; None when the filters are invalid (the page then lists none
        rather than every alert, and says why)."""
        if not self.is_valid():
            return None
        data = self.cleaned_data
        # Both kinds of bounds may be given: the window is where they overlap.
        starts = [data.get("since")]
        ends = [data.get("until")]
        if data.get("date_from"):
            starts.append(_midnight(data["date_from"]))
        if data.get("date_to"):
            ends.append(_midnight(data["date_to"] + timedelta(days=1)))
        starts = [moment for moment in starts if moment is not None]
        ends = [moment for moment in ends if moment is not None]
        return AlertListFilter(
            since=max(starts) if starts else None,
            until=min(ends) if ends else None,
            organization_pk=data.get("organization"),
            camera_public_id=data.get("camera") or None,
            rule_pk=data.get("rule"),
            webhook_pk=data.get("webhook"),
        )


@login_required
def alert_list_page(request: HttpRequest) -> HttpResponse:
    cameras = list(cameras_for_user(user=request.user).order_by("name", "id"))
    form = AlertFilterForm(request.GET, cameras=cameras)
    filters = form.to_filter()
    alerts = alerts_for_user(user=request.user)
    has_alerts = alerts.exists()
    listed = alerts_filtered(alerts, filters) if filters is not None else alerts.none()
    page = Paginator(listed, PAGE_SIZE).get_page(request.GET.get("page"))
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(
        request,
        "notifications/alerts.html",
        {
            "form": form,
            "page": page,
            "filters": filters,
            "filtered": bool(kept),
            "has_alerts": has_alerts,
            "query": kept.urlencode(),
        },
    )
