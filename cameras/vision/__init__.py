"""Computer vision for cameras, with no Django in it: frame sources, JPEG frames, detectors.

- `frames`: resize, JPEG encode/decode with input checks, the wire formats of a frame.
- `sources`: open a source spec (`rtsp://`, `http(s)://`, a file, `device:N`, `demo:`) as a
  `FrameSource`; `DemoScene` is the synthetic camera.
- `detectors`: `motion`, `person`, `face` and `onnx` detectors behind one `Detector` protocol.
"""
