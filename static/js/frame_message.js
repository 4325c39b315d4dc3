// What the stream's messages carry, read the same way by every page that shows them.
//
// A binary stream message: 4-byte big-endian header length, the JSON header, then the payload:
// with `?format=binary` the header is FrameData without "frame" and the payload its JPEG.

export function parse(buffer) {
  const { header, payload } = parseMessage(buffer);
  return { header, jpeg: new Blob([payload], { type: "image/jpeg" }) };
}

// Any binary stream message (`?format=binary`, `?format=h264`): its JSON header and the payload
// after it (a JPEG, an fMP4 segment).
export function parseMessage(buffer) {
  const view = new DataView(buffer);
  const headerLength = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  return { header, payload: new Uint8Array(buffer, 4 + headerLength) };
}

// "person #3 (91%)": a tracked object's id says which box is which person from frame to
// frame; motion boxes are not tracked and have none.
export function boxLabel(detection) {
  const track = Number.isInteger(detection.track_id) ? ` #${detection.track_id}` : "";
  return `${detection.class}${track} (${(detection.confidence * 100).toFixed(0)}%)`;
}
