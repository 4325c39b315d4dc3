"""The camera form: every documented source kind is accepted, bad ones are refused with words a
person can act on (the model's and the source policy's), detectors are a list of checkboxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cameras.forms import DETECTOR_CHOICES, DETECTOR_NOTES, CameraForm
from cameras.vision.detectors import AVAILABLE_DETECTORS

pytestmark = pytest.mark.django_db

POLICY = "not allowed by policy (an administrator can allow it with {})"


def write_video(path, *, frames: int = 10, size=(320, 240)) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for index in range(frames):
        image = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.circle(image, (20 + index * 10, size[1] // 2), 15, (0, 200, 255), -1)
        writer.write(image)
    writer.release()
    return str(path)


def form_for(source: str = "demo:", **fields) -> CameraForm:
    data = {
        "name": "Gate",
        "source": source,
        "detectors": ["motion"],
        "target_fps": "10",
        "max_width": "640",
        "jpeg_quality": "75",
        "min_confidence": "0.5",
        "enabled": "on",
        **fields,
    }
    return CameraForm(data)


@pytest.fixture
def video(tmp_path) -> str:
    return write_video(tmp_path / "driveway.avi")


@pytest.mark.parametrize(
    "source",
    [
        "rtsp://user:secret@cam.example.org:554/stream1",
        "rtsps://cam.example.org/stream1",
        "http://cam.example.org/mjpeg",
        "https://8.8.8.8/video.mjpg",
        "demo:",
        "demo:lobby-2",
        "push:",
    ],
)
def test_every_documented_network_demo_and_push_source_is_accepted(source):
    form = form_for(source)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["source"] == source


def test_a_video_file_is_accepted_as_a_path_and_as_a_file_url(video):
    assert form_for(video).is_valid()
    assert form_for(f"file://{video}").is_valid()


def test_a_device_is_accepted_where_the_policy_allows_devices(settings):
    assert form_for("device:0").errors["source"] == [POLICY.format("CAMERA_ALLOW_DEVICES")]
    settings.CAMERA_ALLOW_DEVICES = True
    assert form_for("device:0").is_valid()


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("", "This field is required."),
        ("ftp://cam.example.org/x", "unsupported source: use rtsp://, rtsps://, http(s)://"),
        ("rtsp://127.0.0.1:554/x", POLICY.format("CAMERA_ALLOWED_NETWORKS")),
        ("http://192.168.1.20/mjpeg", POLICY.format("CAMERA_ALLOWED_NETWORKS")),
        ("http://169.254.169.254/latest", POLICY.format("CAMERA_ALLOWED_NETWORKS")),
        ("/etc/passwd", POLICY.format("CAMERA_FILE_ROOTS")),
        ("videos/clip.mp4", "unsupported source"),
        ("file://host/clip.mp4", "a file URL is file:///absolute/path (three slashes)"),
        ("demo:not ok!", "a demo name may only use letters, digits, - and _"),
        ("device:x", "a device is device:N with N from 0 to 63"),
        ("rtsp:///stream", "rtsp:// URLs need a host, as in rtsp://camera.local/stream"),
        ("rtsp://cam.example.org:99999/x", "not a valid URL"),
        ("x" * 1001, "Ensure this value has at most 1000 characters (it has 1001)."),
    ],
)
def test_a_bad_source_is_refused_with_words_a_person_can_act_on(source, words):
    form = form_for(source)
    assert not form.is_valid()
    assert any(words in error for error in form.errors["source"]), form.errors["source"]


def test_a_missing_file_and_one_outside_the_roots_get_the_same_answer(tmp_path):
    assert (
        form_for(str(tmp_path / "missing.avi")).errors["source"]
        == form_for("/etc/hostname").errors["source"]
        == [POLICY.format("CAMERA_FILE_ROOTS")]
    )


def test_detectors_are_a_list_of_the_ticked_names():
    form = form_for(detectors=["motion", "person"])
    assert form.is_valid()
    assert form.cleaned_data["detectors"] == ["motion", "person"]
    form = form_for(detectors=[])
    assert form.is_valid()
    assert form.cleaned_data["detectors"] == []


def test_an_unknown_or_repeated_detector_is_refused():
    assert form_for(detectors=["unicorn"]).errors["detectors"] == [
        "Select a valid choice. unicorn is not one of the available choices."
    ]
    assert form_for(detectors=["motion", "motion"]).errors["detectors"] == [
        "Each detector may be listed once."
    ]


def test_the_onnx_detector_needs_its_files_inside_the_roots(tmp_path):
    errors = form_for(detectors=["onnx"]).errors["detectors"]
    assert errors == [
        "the onnx detector needs a model file and a labels file "
        "(a YOLOv5/YOLOv8 .onnx export and its class names, one per line)"
    ]
    errors = form_for(
        detectors=["onnx"], onnx_model="/etc/model.onnx", onnx_labels="/etc/labels.txt"
    ).errors["detectors"]
    assert "CAMERA_FILE_ROOTS" in errors[0]


def test_every_detector_is_a_checkbox_with_its_cost():
    assert [name for name, _ in DETECTOR_CHOICES] == list(AVAILABLE_DETECTORS)
    assert set(DETECTOR_NOTES) == set(AVAILABLE_DETECTORS)
    html = str(form_for()["detectors"])
    for name in AVAILABLE_DETECTORS:
        assert f'type="checkbox" name="detectors" value="{name}"' in html
    assert "about 2.6 ms a frame" in html and "heavy, about 35–50 ms a frame" in html


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("target_fps", "0", "Ensure this value is greater than or equal to 1."),
        ("target_fps", "31", "Ensure this value is less than or equal to 30."),
        ("target_fps", "ten", "Enter a whole number."),
        ("max_width", "32", "Ensure this value is greater than or equal to 64."),
        ("jpeg_quality", "100", "Ensure this value is less than or equal to 95."),
        ("min_confidence", "1.5", "Ensure this value is less than or equal to 1.0."),
        ("min_confidence", "nan", "Enter a number."),
        ("name", "x" * 121, "Ensure this value has at most 120 characters (it has 121)."),
        ("name", "Gate\x00", "Null characters are not allowed."),
        ("onnx_model", "/m" * 251, "Ensure this value has at most 500 characters (it has 502)."),
    ],
)
def test_out_of_range_oversized_and_malformed_settings_are_refused(field, value, words):
    form = form_for(**{field: value})
    assert not form.is_valid()
    assert words in form.errors[field]


def test_the_source_help_lists_every_kind():
    help_text = form_for().fields["source"].help_text
    for kind in ("rtsp://", "rtsps://", "http(s)://", "file:///", "device:0", "demo:", "push:"):
        assert kind in help_text
