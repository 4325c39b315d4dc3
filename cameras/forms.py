"""Forms for cameras: the camera pages' add/change form, the Test source request, and the one
definition of the detector choices that the pages and the Django admin share.

The rules live on the model (field validators: the source spec and the source policy, detector
names, ranges) and in `camera_detectors_check` (an onnx detector needs readable files): the
forms run those, so the pages, the admin and the API cannot disagree.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from cameras.models import Camera
from cameras.services import camera_detectors_check
from cameras.vision.detectors import AVAILABLE_DETECTORS
from project.query_params import ID_MAX

# What each detector finds and what it costs, from README's "Detectors" (measured per 640×480
# frame on 2 cores). Every configured detector runs on every processed frame, so the costs add.
DETECTOR_NOTES: dict[str, str] = {
    "motion": "what moves (background subtraction); light, about 2.6 ms a frame",
    "person": "upright people (HOG); about 14 ms a frame",
    "face": "frontal faces (Haar cascade); heavy, about 35–50 ms a frame",
    "onnx": "your YOLOv5/YOLOv8 ONNX model; its cost depends on the model",
}

DETECTOR_CHOICES: list[tuple[str, str]] = [
    (name, f"{name}: {DETECTOR_NOTES[name]}") for name in AVAILABLE_DETECTORS
]

SOURCE_HELP = (
    "rtsp://user:password@host:554/path or rtsps://… (an RTSP camera); "
    "http(s)://… (MJPEG or one video stream over HTTP); "
    "/absolute/path/video.mp4 or file:///absolute/path/video.mp4 (a video file, looped); "
    "device:0 (a capture device on the server); "
    "demo: or demo:name (a synthetic scene); "
    "push: (frames are sent to the ingest API, e.g. from a webcam on the camera's publish page). "
    "Files, devices and private networks are allowed only where the server's source policy "
    "allows them."
)


class DetectorsField(forms.MultipleChoiceField):
    """The camera's detectors as checkboxes: a list of names, as `Camera.detectors` stores."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text", "Every detector runs on every processed frame: their costs add up."
        )
        super().__init__(choices=DETECTOR_CHOICES, **kwargs)


class CameraModelForm(forms.ModelForm):
    """A camera's settings, checked as the services check them (for the pages and the admin)."""

    detectors = DetectorsField()

    def _post_clean(self) -> None:
        super()._post_clean()
        # The same detector check as the services' (e.g. onnx without a readable model file).
        if not self.errors:
            try:
                camera_detectors_check(self.instance)
            except ValidationError as error:
                self._update_errors(error)


class CameraForm(CameraModelForm):
    """The camera pages' form. Saved through `camera_create`/`camera_update`, never `save()`."""

    class Meta:
        model = Camera
        fields = [
            "name",
            "source",
            "detectors",
            "target_fps",
            "max_width",
            "jpeg_quality",
            "min_confidence",
            "onnx_model",
            "onnx_labels",
            "enabled",
        ]
        labels = {
            "target_fps": "Frames per second",
            "max_width": "Max width (px)",
            "jpeg_quality": "JPEG quality",
            "min_confidence": "Min confidence",
            "onnx_model": "ONNX model file",
            "onnx_labels": "ONNX labels file",
        }
        help_texts = {
            "source": SOURCE_HELP,
            "target_fps": "1–30. Fewer frames cost less: the detectors run on each one.",
            "jpeg_quality": "10–95: the quality of the stream and of event snapshots.",
            "min_confidence": "0–1: person, face and onnx boxes under it are dropped.",
            "onnx_model": "Only for the onnx detector: a path inside the allowed file folders.",
            "onnx_labels": "Only for the onnx detector: one class name a line.",
        }
        widgets = {"source": forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"})}

    def __init__(self, *args: Any, organizations=None, read_only: bool = False, **kwargs: Any):
        """`organizations`: when adding, the ones the camera may go to (a choice). `read_only`:
        shown to someone who may not change it, every field disabled."""
        super().__init__(*args, **kwargs)
        if organizations is not None:
            self.fields["organization"] = forms.ModelChoiceField(
                queryset=organizations, empty_label=None, label="Organization"
            )
            self.order_fields(["organization"])
        if read_only:
            for field in self.fields.values():
                field.disabled = True

    def camera_settings(self) -> dict[str, Any]:
        """Every camera setting of the form, for `camera_create`."""
        return {name: self.cleaned_data[name] for name in self._meta.fields}

    def changed_camera_settings(self) -> dict[str, Any]:
        """The camera settings that differ from the instance's, for `camera_update`: an
        unchanged source must not reset the camera's status."""
        return {
            name: self.cleaned_data[name] for name in self.changed_data if name in self._meta.fields
        }


class SourceTestForm(forms.Form):
    """What Test source needs: the organization it is tested for (the tester must manage its
    cameras), the source as typed, and how to encode the frame it shows."""

    organization = forms.IntegerField(min_value=1, max_value=ID_MAX)
    # Only its length here: the source's rules are checked when it is opened, where a refusal
    # is answered like any other failure to get a frame.
    source = forms.CharField(max_length=Camera._meta.get_field("source").max_length, strip=True)
    # The model's ranges: a plain form does not run model validators by itself.
    max_width = forms.IntegerField(
        required=False, validators=Camera._meta.get_field("max_width").validators
    )
    jpeg_quality = forms.IntegerField(
        required=False, validators=Camera._meta.get_field("jpeg_quality").validators
    )
