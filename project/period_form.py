"""The period filters the review pages share (events, alerts): From/To dates shown as inputs, and
`since`/`until` times set by links that must match an API query (the assistant's answers), kept
across a re-filter as hidden inputs."""

from __future__ import annotations

from django import forms

from project.query_params import ParamError, date_in_bounds, time_in_bounds


class PeriodFilterForm(forms.Form):
    """Dates are whole days in the server's time zone; `until` is exclusive, as in the API."""

    date_from = forms.DateField(required=False, label="From")
    date_to = forms.DateField(required=False, label="To")
    since = forms.DateTimeField(required=False, widget=forms.HiddenInput, label="Since")
    until = forms.DateTimeField(required=False, widget=forms.HiddenInput, label="Until")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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
        for name in ("since", "until"):
            if data.get(name):
                try:
                    time_in_bounds(data[name], name=name)
                except ParamError as exc:
                    self.add_error(name, exc.message)
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("until must be later than since.")
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data
