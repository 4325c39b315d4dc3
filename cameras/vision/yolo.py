"""YOLO-format ONNX models without their Python packages: input size, letterbox, output decoding.

Pure numpy/OpenCV helpers for the `onnx` detector:
- `model_input_size` reads the image input's size from the .onnx file itself (a few protobuf
  fields, so no `onnx` package is needed at run time);
- `letterbox` fits a frame into the model's input, keeping its aspect ratio, padded with grey;
- `decode_output` turns YOLOv5 (`[1, N, 5+C]`: cx, cy, w, h, objectness, class scores) or YOLOv8
  (`[1, 4+C, N]`: cx, cy, w, h, class scores) output into boxes, scores and class ids, telling the
  layouts apart by which axis matches the number of labels;
- `non_max_suppression` keeps the best box among overlapping ones of the same class.
Boxes are in the model input's pixels until `Letterbox.to_frame` maps them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LETTERBOX_GREY = 114  # the padding value YOLO models are trained with


class ModelOutputError(ValueError):
    """The model's output does not have a YOLO layout that fits the labels."""


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the model input: input = frame * scale + pad."""

    scale: float
    pad_x: int
    pad_y: int

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x, y, w, h boxes in model input pixels -> in frame pixels (not clipped)."""
        mapped = boxes.astype(np.float32, copy=True)
        mapped[:, 0] -= self.pad_x
        mapped[:, 1] -= self.pad_y
        mapped /= self.scale
        return mapped


def letterbox(
    frame: np.ndarray, width: int, height: int, canvas: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """The frame scaled to fit `width` x `height`, centred on grey; pass `canvas` to reuse it."""
    frame_height, frame_width = frame.shape[:2]
    scale = min(width / frame_width, height / frame_height)
    new_width = max(1, min(width, round(frame_width * scale)))
    new_height = max(1, min(height, round(frame_height * scale)))
    pad_x = (width - new_width) // 2
    pad_y = (height - new_height) // 2
    if canvas is None or canvas.shape != (height, width, 3):
        canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas.fill(LETTERBOX_GREY)
    canvas[pad_y : pad_y + new_height, pad_x : pad_x + new_width] = cv2.resize(
        frame, (new_width, new_height), interpolation=cv2.INTER_LINEAR
    )
    return canvas, Letterbox(scale=scale, pad_x=pad_x, pad_y=pad_y)


def decode_output(
    output: np.ndarray, num_classes: int, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (N, 4) x, y, w, h; scores (N,); class ids (N,)) of the candidates >= min_score.

    YOLOv5 rows score objectness x class score; YOLOv8 rows score the class score alone. The
    layout is told by which axis has 4 + C or 5 + C entries; a model with exactly 4 + C candidates
    could be either, and is read as YOLOv5 (real models have thousands of candidates).
    """
    rows = np.squeeze(output, axis=0) if output.ndim == 3 and output.shape[0] == 1 else output
    if rows.ndim != 2:
        raise ModelOutputError(_shape_message(output.shape, num_classes))
    first, second = rows.shape
    if first == 4 + num_classes and second != 5 + num_classes:
        rows = rows.T  # YOLOv8: one column per candidate
        class_scores = rows[:, 4:]
        objectness = None
    elif second == 5 + num_classes:
        class_scores = rows[:, 5:]
        objectness = rows[:, 4]
    elif second == 4 + num_classes:
        class_scores = rows[:, 4:]  # YOLOv8 exported already transposed
        objectness = None
    else:
        raise ModelOutputError(_shape_message(output.shape, num_classes))
    class_ids = np.argmax(class_scores, axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    if objectness is not None:
        scores = scores * objectness
    # A broken export can emit NaN or infinite values; those candidates are not boxes.
    keep = (scores >= min_score) & np.isfinite(rows[:, :4]).all(axis=1)
    centres = rows[keep, :4]
    boxes = np.empty_like(centres)
    boxes[:, 0] = centres[:, 0] - centres[:, 2] / 2
    boxes[:, 1] = centres[:, 1] - centres[:, 3] / 2
    boxes[:, 2:] = centres[:, 2:]
    return boxes, scores[keep].astype(np.float32), class_ids[keep]


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Indices of the boxes to keep: per class, the best of each group of overlapping boxes."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    kept = cv2.dnn.NMSBoxesBatched(
        boxes.tolist(), scores.tolist(), class_ids.tolist(), 0.0, iou_threshold
    )
    return np.asarray(kept, dtype=np.int64).reshape(-1)


def _shape_message(shape: tuple[int, ...], num_classes: int) -> str:
    return (
        f"the model's output shape {list(shape)} does not fit the {num_classes} labels: expected "
        f"[1, N, {5 + num_classes}] (YOLOv5) or [1, {4 + num_classes}, N] (YOLOv8)"
    )


def model_input_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an ONNX model's first input when it is a fixed [1, 3, H, W] image.

    None when the size is dynamic or the input is not a 4-D tensor. Raises ValueError on bytes
    that are not a protobuf.
    """
    view = memoryview(data)
    graph = _first_field(view, 0, len(view), 7)  # ModelProto.graph
    if graph is None:
        raise ValueError("no graph in the model")
    value_info = _first_field(view, *graph, 11)  # GraphProto.input
    if value_info is None:
        return None
    type_proto = _first_field(view, *value_info, 2)  # ValueInfoProto.type
    tensor = type_proto and _first_field(view, *type_proto, 1)  # TypeProto.tensor_type
    shape = tensor and _first_field(view, *tensor, 2)  # TypeProto.Tensor.shape
    if not shape:
        return None
    dims: list[int | None] = []
    for field, start, end in _length_delimited_fields(view, *shape):
        if field == 1:  # TensorShapeProto.dim
            value = None
            for dim_field, wire, dim_value in _fields(view, start, end):
                if dim_field == 1 and wire == 0:  # Dimension.dim_value
                    value = dim_value
            dims.append(value)
    if len(dims) != 4 or not dims[2] or not dims[3]:
        return None
    return dims[3], dims[2]


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if position >= len(view) or shift > 63:
            raise ValueError("bad varint")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _fields(view: memoryview, start: int, end: int):
    """(field number, wire type, value) of each field; a length-delimited value is (start, end)."""
    position = start
    while position < end:
        key, position = _varint(view, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(view, position)
            yield field, wire, value
        elif wire == 2:
            length, position = _varint(view, position)
            if position + length > end:
                raise ValueError("field runs past its message")
            yield field, wire, (position, position + length)
            position += length
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _length_delimited_fields(view: memoryview, start: int, end: int):
    for field, wire, value in _fields(view, start, end):
        if wire == 2:
            yield field, *value


def _first_field(view: memoryview, start: int, end: int, number: int) -> tuple[int, int] | None:
    for field, field_start, field_end in _length_delimited_fields(view, start, end):
        if field == number:
            return field_start, field_end
    return None
