"""The onnx detector, run through cv2.dnn on tiny YOLO-layout models these tests build.

Each model pools its input to the three channel means, then a 1x1 convolution whose biases are the
candidate table and a reshape into YOLOv8 ([1, 4+C, N]) or YOLOv5 ([1, N, 5+C]) layout. So the
output is known exactly, and one candidate's score is the input's mean brightness: what the
detector feeds the network really matters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cameras.vision.detectors import DetectorConfigError, OnnxDetector, build_detectors
from cameras.vision.yolo import decode_output, letterbox, model_input_size

LABELS = ["person", "car", "dog"]
INPUT = 128
GREY = 114 / 255

# Candidates in model input pixels: (cx, cy, w, h, objectness, person, car, dog).
CANDIDATES = [
    (64, 64, 32, 20, 1.0, 0.9, 0.0, 0.0),  # person
    (65, 64, 32, 20, 1.0, 0.8, 0.0, 0.0),  # the same person, weaker: NMS removes it
    (64, 65, 32, 20, 1.0, 0.0, 0.7, 0.0),  # a car on the same spot: another class, kept
    (20, 50, 10, 10, 1.0, 0.0, 0.0, 0.3),  # a dog under the threshold
    (124, 90, 16, 10, 1.0, 0.0, 0.6, 0.0),  # a car over the right edge: clipped
    (30, 40, 12, 8, 1.0, 0.0, 0.0, 0.0),  # a dog scored by the input's brightness (below)
    (100, 40, 10, 10, 0.5, 0.0, 0.0, 0.9),  # YOLOv5 only: 0.5 x 0.9 is under the threshold
]
BRIGHTNESS_CANDIDATE = 5
# A 1280x720 frame letterboxed into 128x128: scale 0.1, 28 grey rows above and below.
FRAME_W, FRAME_H = 1280, 720
EXPECTED = {
    ("person", 0.9, (480, 260, 320, 200)),
    ("car", 0.7, (480, 270, 320, 200)),
    ("car", 0.6, (1160, 570, 120, 100)),
}
WHITE_FRAME_MEAN = (72 * 1.0 + 56 * GREY) / 128  # the picture, plus the letterbox's grey bands


def build_model(path: Path, *, layout: str, dynamic: bool = False) -> Path:
    # YOLOv8 has no objectness, so the last candidate (which only objectness rejects) is v5's.
    candidates = CANDIDATES if layout == "v5" else CANDIDATES[:-1]
    table = np.array(candidates, dtype=np.float32)
    if layout == "v8":
        # [cx, cy, w, h, class scores] per candidate, one column per candidate.
        grid = np.concatenate([table[:, :4], table[:, 5:]], axis=1).T
    else:
        grid = table  # one row per candidate
    rows, columns = grid.shape
    channels = rows * columns
    bias = grid.reshape(-1).copy()
    weights = np.zeros((channels, 3, 1, 1), dtype=np.float32)
    score_row, score_column = (
        (4 + LABELS.index("dog"), BRIGHTNESS_CANDIDATE)
        if layout == "v8"
        else (BRIGHTNESS_CANDIDATE, 5 + LABELS.index("dog"))
    )
    brightness_channel = score_row * columns + score_column
    bias[brightness_channel] = 0.0
    weights[brightness_channel] = 1 / 3  # the mean of the three channel means
    size = ["height", "width"] if dynamic else [INPUT, INPUT]
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Conv", ["pooled", "weights", "bias"], ["table"]),
            helper.make_node("Reshape", ["table", "shape"], ["output0"]),
        ],
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, rows, columns])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
            numpy_helper.from_array(np.array([1, rows, columns], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def labels_file(tmp_path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(LABELS) + "\n")
    return path


@pytest.fixture
def v8_model(tmp_path) -> Path:
    return build_model(tmp_path / "yolov8.onnx", layout="v8")


def found(detector: OnnxDetector, frame: np.ndarray) -> set[tuple[str, float, tuple]]:
    return {(d.label, round(d.confidence, 3), d.bbox) for d in detector.detect(frame)}


def frame_of(value: int) -> np.ndarray:
    return np.full((FRAME_H, FRAME_W, 3), value, dtype=np.uint8)


def test_yolov8_output_is_decoded_thresholded_suppressed_and_mapped_to_the_frame(
    v8_model, labels_file
):
    detector = OnnxDetector(str(v8_model), str(labels_file))
    assert (detector.input_width, detector.input_height) == (INPUT, INPUT)
    brightness_dog = ("dog", round(WHITE_FRAME_MEAN, 3), (240, 80, 120, 80))
    assert found(detector, frame_of(255)) == EXPECTED | {brightness_dog}


def test_the_network_really_sees_the_frame(v8_model, labels_file):
    detector = OnnxDetector(str(v8_model), str(labels_file))
    # Black: the brightness-scored dog is at 56 grey rows / 128 = 0.2, under the threshold.
    assert found(detector, frame_of(0)) == EXPECTED


def test_yolov5_output_multiplies_objectness_into_the_score(tmp_path, labels_file):
    model = build_model(tmp_path / "yolov5.onnx", layout="v5")
    detector = OnnxDetector(str(model), str(labels_file))
    brightness_dog = ("dog", round(WHITE_FRAME_MEAN, 3), (240, 80, 120, 80))
    assert found(detector, frame_of(255)) == EXPECTED | {brightness_dog}


def test_the_minimum_confidence_is_applied(v8_model, labels_file):
    detector = OnnxDetector(str(v8_model), str(labels_file), min_confidence=0.75)
    assert found(detector, frame_of(0)) == {("person", 0.9, (480, 260, 320, 200))}


def test_detections_are_seed_shaped(v8_model, labels_file):
    (detector,) = build_detectors(
        ["onnx"], min_confidence=0.85, onnx_model=str(v8_model), onnx_labels=str(labels_file)
    )
    assert [d.as_dict() for d in detector.detect(frame_of(0))] == [
        {"class": "person", "confidence": 0.9, "bbox": [480, 260, 320, 200]}
    ]


def test_a_model_with_a_dynamic_input_size_runs_at_640(tmp_path, labels_file):
    model = build_model(tmp_path / "dynamic.onnx", layout="v8", dynamic=True)
    assert model_input_size(model.read_bytes()) is None
    detector = OnnxDetector(str(model), str(labels_file))
    assert (detector.input_width, detector.input_height) == (640, 640)
    # A square 640 frame fills the 640 input: boxes come back exactly as the model gave them.
    square = np.zeros((640, 640, 3), dtype=np.uint8)
    assert found(detector, square) == {
        ("person", 0.9, (48, 54, 32, 20)),
        ("car", 0.7, (48, 55, 32, 20)),
        ("car", 0.6, (116, 85, 16, 10)),
    }


def test_model_input_size_reads_the_model_file(v8_model):
    assert model_input_size(v8_model.read_bytes()) == (INPUT, INPUT)


def test_a_labels_file_that_does_not_fit_the_model_is_refused(v8_model, tmp_path):
    labels = tmp_path / "five.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(DetectorConfigError, match=r"does not fit the 5 labels.*\[1, 9, N\]"):
        OnnxDetector(str(v8_model), str(labels))


def test_a_missing_model_is_refused_as_one_outside_the_allowed_folders(
    tmp_path, labels_file, v8_model, settings
):
    # Missing, or present but outside CAMERA_FILE_ROOTS: one answer, so a camera's model field
    # cannot tell which files exist on the server.
    answers = []
    for model in (tmp_path / "none.onnx", Path("/etc/passwd"), Path("/no/such/model.onnx")):
        with pytest.raises(DetectorConfigError) as refused:
            build_detectors(["onnx"], onnx_model=str(model), onnx_labels=str(labels_file))
        answers.append(str(refused.value))
    settings.CAMERA_FILE_ROOTS = [tmp_path / "elsewhere"]
    with pytest.raises(DetectorConfigError) as refused:
        build_detectors(["onnx"], onnx_model=str(v8_model), onnx_labels=str(labels_file))
    answers.append(str(refused.value))
    assert set(answers) == {
        "the ONNX model: not allowed by policy "
        "(an administrator can allow it with CAMERA_FILE_ROOTS)"
    }


def test_a_labels_file_outside_the_allowed_folders_is_refused(v8_model):
    with pytest.raises(DetectorConfigError, match="the labels file: not allowed by policy"):
        build_detectors(["onnx"], onnx_model=str(v8_model), onnx_labels="/etc/hostname")


def test_a_model_reached_through_a_symlink_out_of_the_allowed_folders_is_refused(
    tmp_path, labels_file, v8_model, settings
):
    inside = tmp_path / "models"
    inside.mkdir()
    (inside / "escape.onnx").symlink_to(v8_model)
    (inside / "ok.onnx").symlink_to(v8_model)
    settings.CAMERA_FILE_ROOTS = [inside]
    labels_inside = inside / "labels.txt"
    labels_inside.write_text(labels_file.read_text())
    # v8_model itself lives outside the root: a link to it does not bring it in.
    with pytest.raises(DetectorConfigError, match="not allowed by policy"):
        build_detectors(
            ["onnx"], onnx_model=str(inside / "escape.onnx"), onnx_labels=str(labels_inside)
        )
    settings.CAMERA_FILE_ROOTS = [tmp_path]
    [detector] = build_detectors(
        ["onnx"], onnx_model=str(inside / "ok.onnx"), onnx_labels=str(labels_inside)
    )
    assert detector.labels == LABELS


def test_a_file_that_is_not_a_model_is_refused(tmp_path, labels_file):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf at all" * 10)
    with pytest.raises(DetectorConfigError, match="not an ONNX model OpenCV can load"):
        OnnxDetector(str(garbage), str(labels_file))


def test_missing_and_malformed_labels_files_are_refused(v8_model, tmp_path):
    with pytest.raises(DetectorConfigError, match="labels file not found"):
        OnnxDetector(str(v8_model), str(tmp_path / "none.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DetectorConfigError, match="is empty"):
        OnnxDetector(str(v8_model), str(empty))
    gap = tmp_path / "gap.txt"
    gap.write_text("person\n\ndog\n")
    with pytest.raises(DetectorConfigError, match="line 2 .* is empty"):
        OnnxDetector(str(v8_model), str(gap))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DetectorConfigError, match="could not read"):
        OnnxDetector(str(v8_model), str(binary))


def test_the_onnx_detector_needs_its_files():
    with pytest.raises(DetectorConfigError, match="needs a model file and a labels file"):
        build_detectors(["onnx"])


def test_letterbox_centres_the_frame_on_grey():
    canvas, placement = letterbox(np.full((720, 1280, 3), 255, dtype=np.uint8), 128, 128)
    assert canvas.shape == (128, 128, 3)
    assert (placement.scale, placement.pad_x, placement.pad_y) == (0.1, 0, 28)
    assert (canvas[:28] == 114).all() and (canvas[28:100] == 255).all()
    assert (canvas[100:] == 114).all()
    box = placement.to_frame(np.array([[48.0, 54.0, 32.0, 20.0]]))
    assert box.round().tolist() == [[480.0, 260.0, 320.0, 200.0]]


def test_decode_output_tells_the_layouts_apart():
    # Three candidates, two classes. YOLOv8: [1, 6, 3]; YOLOv5: [1, 3, 7].
    v8 = np.zeros((1, 6, 3), dtype=np.float32)
    v8[0, :4, 1] = [50, 60, 20, 10]
    v8[0, 5, 1] = 0.8
    boxes, scores, classes = decode_output(v8, 2, 0.5)
    assert boxes.tolist() == [[40, 55, 20, 10]] and scores.tolist() == pytest.approx([0.8])
    assert classes.tolist() == [1]
    v5 = np.zeros((1, 3, 7), dtype=np.float32)
    v5[0, 2] = [50, 60, 20, 10, 0.9, 0.9, 0.1]
    boxes, scores, classes = decode_output(v5, 2, 0.5)
    assert boxes.tolist() == [[40, 55, 20, 10]] and scores.tolist() == pytest.approx([0.81])
    assert classes.tolist() == [0]


def test_decode_output_drops_candidates_that_are_not_numbers():
    v8 = np.zeros((1, 6, 2), dtype=np.float32)
    v8[0, :4, 0] = [np.nan, 60, 20, 10]
    v8[0, :4, 1] = [50, 60, 20, 10]
    v8[0, 4, :] = 0.9
    boxes, scores, classes = decode_output(v8, 2, 0.5)
    assert boxes.tolist() == [[40, 55, 20, 10]]
