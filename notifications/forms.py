"""The pages' forms for rules and webhooks: the organization's cameras as checkboxes, classes
from their detectors (plus free text, for ONNX models' classes), zones from their zones.

The checks are the API's (notifications/serializers.py); saved through the services, never
`save()`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from cameras.models import Camera
from notifications.models import ALERT_FILTER_FIELDS, AlertRule, Webhook
from notifications.serializers import (
    URL_MAX,
    classes_clean,
    quiet_hours_check,
    webhook_url_validate,
    zones_clean,
)
from organizations.models import Organization

DEFAULTED_FIELDS = ["min_confidence", "min_duration_seconds", "cooldown_seconds"]

# The classes each built-in detector reports (cameras.vision.detectors); onnx models report
# their labels file's, typed as free text.
DETECTOR_CLASSES = {"motion": "motion", "person": "person", "face": "face"}


def _time_input() -> forms.TimeInput:
    return forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


class AlertFilterForm(forms.ModelForm):
    cameras = forms.ModelMultipleChoiceField(
        queryset=Camera.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every camera.",
    )
    classes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked (and none typed below): every class.",
    )
    more_classes = forms.CharField(
        required=False,
        max_length=2400,
        label="Other classes",
        help_text="Comma-separated, e.g. the classes of an ONNX model: car, dog.",
    )
    zones = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: anywhere in the picture.",
    )
    quiet_hours_start = forms.TimeField(
        required=False, widget=_time_input(), help_text="In the organization's time zone."
    )
    quiet_hours_end = forms.TimeField(required=False, widget=_time_input())

    def __init__(
        self, *args: Any, organization: Organization, read_only: bool = False, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        cameras = list(Camera.objects.filter(organization=organization).order_by("name", "id"))
        self.fields["cameras"].queryset = Camera.objects.filter(organization=organization)
        self.fields["cameras"].label_from_instance = lambda camera: camera.name
        detected = {
            DETECTOR_CLASSES[name]
            for camera in cameras
            for name in camera.detectors
            if name in DETECTOR_CLASSES
        }
        current = set(self.instance.classes) if self.instance.pk else set()
        known = sorted(detected | {"person"})
        self.fields["classes"].choices = [(name, name) for name in known]
        # Zones: every camera's, named with their cameras, so the choice says where they are.
        zone_cameras: dict[str, list[str]] = {}
        for camera in cameras:
            for zone in camera.zones:
                zone_cameras.setdefault(zone["name"], []).append(camera.name)
        for zone in self.instance.zones if self.instance.pk else []:
            zone_cameras.setdefault(zone, ["no camera now"])
        self.fields["zones"].choices = [
            (zone, f"{zone} ({', '.join(names)})") for zone, names in sorted(zone_cameras.items())
        ]
        if self.instance.pk and not self.is_bound:
            self.initial["classes"] = sorted(current & set(known))
            self.initial["more_classes"] = ", ".join(
                name for name in self.instance.classes if name not in known
            )
        # Left empty, the model's default (0 confidence, 0 s, 60 s cool-down).
        for name in DEFAULTED_FIELDS:
            self.fields[name].required = False
        if read_only:
            for field in self.fields.values():
                field.disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in DEFAULTED_FIELDS:
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = self._meta.model._meta.get_field(name).default
        typed = (cleaned.get("more_classes") or "").split(",")
        try:
            cleaned["classes"] = classes_clean([*cleaned.get("classes", []), *typed])
        except ValidationError as invalid:
            self.add_error("more_classes", invalid)
        try:
            cleaned["zones"] = zones_clean(cleaned.get("zones", []))
        except ValidationError as invalid:
            self.add_error("zones", invalid)
        try:
            quiet_hours_check(cleaned.get("quiet_hours_start"), cleaned.get("quiet_hours_end"))
        except ValidationError as invalid:
            self.add_error(None, invalid)
        return cleaned

    def rule_values(self) -> dict[str, Any]:
        """What the services take: the model's fields and `cameras` (a list)."""
        values = {name: self.cleaned_data[name] for name in self._meta.fields}
        values["cameras"] = list(values["cameras"])
        if "url" in self.cleaned_data:
            values["url"] = self.cleaned_data["url"]
        return values


class AlertRuleForm(AlertFilterForm):
    class Meta:
        model = AlertRule
        fields = [*ALERT_FILTER_FIELDS, "notify_browser", "notify_mqtt"]
        labels = {
            "min_confidence": "Min confidence",
            "min_duration_seconds": "Min time in view (s)",
            "cooldown_seconds": "Cool-down (s)",
            "notify_browser": "Show in the browser (the bell, browser notifications)",
            "notify_mqtt": "Publish on MQTT",
        }


class WebhookForm(AlertFilterForm):
    # Checked by webhook_url_validate, as the API checks it (host names without a dot, like
    # http://homeassistant:8123/…, are fine), with a URL keyboard on phones.
    url = forms.CharField(
        max_length=URL_MAX,
        label="URL",
        validators=[webhook_url_validate],
        widget=forms.URLInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
        help_text="http:// or https://. Private and loopback addresses only where the server "
        "allows them (WEBHOOK_ALLOWED_NETWORKS).",
    )

    class Meta:
        model = Webhook
        fields = [*ALERT_FILTER_FIELDS, "include_snapshot"]
        labels = AlertRuleForm.Meta.labels
